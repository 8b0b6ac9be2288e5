"""Secrets by reference: `$NAME` in an action's config names a variable of the worker's
environment. They stay references in every record (commands, outcomes, DLQ) and are
resolved only when the action runs; what an action returns is scrubbed of their values.

Where references are read (nowhere else, so a shell script's own `$VAR` is left alone):

- `user`, `password`, `token`, `pagerduty-auth-token`, `pagerduty-routing-key`,
  `dependency-track-api-key`: the whole value, `$NAME` or `${NAME}` (upstream's keys);
- `env`, `docker-env`: the value of a `K=$NAME` entry;
- `headers` values, `url`, and the `host` and `instance` of email and serviceNow:
  `${NAME}` anywhere, or a whole value `$NAME`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MissingSecret", "Resolved", "resolve"]

_WHOLE = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")
_EMBEDDED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
WHOLE_VALUE_KEYS = (
    "user",
    "password",
    "token",
    "pagerduty-auth-token",
    "pagerduty-routing-key",
    "dependency-track-api-key",
)
ENV_LIST_KEYS = ("env", "docker-env")
EMBEDDED_KEYS = ("url", "host", "instance")
#: Secrets shorter than this are not scrubbed from output: they would blank common text.
MIN_REDACTED_LENGTH = 4
REDACTED = "[redacted]"


class MissingSecret(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(f"secret ${name} is not set in the worker's environment")
        self.name = name


@dataclass
class Resolved:
    params: dict[str, Any]
    values: list[str] = field(default_factory=list)  #: the secret values, for redact()

    def redact(self, value: Any) -> Any:
        """The value with every secret replaced, in nested dicts, lists and strings."""
        if isinstance(value, str):
            for secret in self.values:
                if len(secret) >= MIN_REDACTED_LENGTH:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, Mapping):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
        return value


def resolve(params: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Resolved:
    env = os.environ if environ is None else environ
    resolved = Resolved(dict(params))

    def lookup(name: str) -> str:
        if name not in env:
            raise MissingSecret(name)
        resolved.values.append(env[name])
        return env[name]

    def whole(text: str) -> str:
        match = _WHOLE.match(text.strip())
        return lookup(match.group(1)) if match else text

    def embedded(text: str) -> str:
        return whole(_EMBEDDED.sub(lambda m: lookup(m.group(1)), text))

    for key in WHOLE_VALUE_KEYS:
        if isinstance(params.get(key), str):
            resolved.params[key] = whole(params[key])
    for key in ENV_LIST_KEYS:
        if isinstance(params.get(key), list):
            resolved.params[key] = [_env_entry(str(item), whole) for item in params[key]]
    for key in EMBEDDED_KEYS:
        if isinstance(params.get(key), str):
            resolved.params[key] = embedded(params[key])
    if isinstance(params.get("headers"), Mapping):
        resolved.params["headers"] = {
            name: [embedded(str(v)) for v in (values if isinstance(values, list) else [values])]
            for name, values in params["headers"].items()
        }
    return resolved


def _env_entry(item: str, whole: Any) -> str:
    name, sep, value = item.partition("=")
    return f"{name}{sep}{whole(value)}" if sep else item
