"""The errors of Postee Streams, in one tree.

    PosteeError
    ├── ConfigError          a broken cfg.yaml or setting: names the file, the route or
    │                        action, and the key, so the operator can fix it at once
    │   └── ConfigErrors     several ConfigErrors found in one pass (`postee validate`)
    └── EventError           a record that cannot be processed: carries the stage and the
                             reason that go into the DLQ record

Action errors (temporary / permanent) live in `actions.base`, because actions must not
import `streams`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["ConfigError", "ConfigErrors", "EventError", "PosteeError"]


class PosteeError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(PosteeError):
    """One problem in a configuration file, located as precisely as we can."""

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        where: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.where = where  #: e.g. "route 'tracee-trc2'" or "action 'save-log'"
        self.key = key  #: the offending key, e.g. "input-files"
        super().__init__(self.describe())

    def describe(self) -> str:
        parts = [p for p in (self.file, self.where, f"key '{self.key}'" if self.key else None) if p]
        location = ": ".join(parts)
        return f"{location}: {self.message}" if location else self.message


class ConfigErrors(ConfigError):
    """Every error found while loading one file; raised so startup shows them all."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, where=first.where, key=first.key)

    def describe(self) -> str:
        return "\n".join(e.describe() for e in getattr(self, "errors", []))


class EventError(PosteeError):
    """A record we cannot process; it goes to the DLQ with this stage and reason."""

    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage  #: "decode", "route", "command", "execute", ...
        self.reason = reason
        super().__init__(f"{stage}: {reason}")
