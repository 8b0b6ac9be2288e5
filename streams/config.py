"""Load a Postee `cfg.yaml` into frozen, typed objects, or fail naming file, place and key.

Upstream semantics (DESIGN §4): `routes`, `templates`, `actions` (older files: `outputs`).
Structure is checked against `schemas/config.schema.json`; references between routes,
actions and templates, and the existence of Rego files, are checked here. Unknown keys
are reported as warnings (upstream ignores them silently). Every problem found in one pass
is raised together as `ConfigErrors`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jsonschema
import yaml

import actions
from streams import rules
from streams.errors import ConfigError, ConfigErrors

__all__ = [
    "SUPPORTED_ACTION_TYPES",
    "Action",
    "Plugins",
    "PosteeConfig",
    "RateLimit",
    "Route",
    "Template",
    "action_type",
    "load",
    "parse_duration_s",
    "parse_rate",
    "rule_errors",
]

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.json"

#: Action types this build can execute; each has `$defs/action-<type>` in the schema.
SUPPORTED_ACTION_TYPES = tuple(actions.REGISTRY)
#: Other names upstream gives a type (compared case-insensitively, like every type).
TYPE_ALIASES = {"teamsworkflows": "teams"}


def action_type(name: str) -> str:
    """The registry name of an action `type` as written (`serviceNow` → `servicenow`)."""
    kind = name.lower()
    return TYPE_ALIASES.get(kind, kind)


@dataclass(frozen=True)
class Plugins:
    aggregate_message_number: int | None = None
    aggregate_message_timeout_s: int | None = None
    unique_message_props: tuple[str, ...] = ()
    unique_message_timeout_s: int | None = None


#: When a step of a serialized route runs, after the previous step that ran (`on:`).
CONDITIONS = ("success", "failure", "always")


@dataclass(frozen=True)
class RateLimit:
    """`rate-limit: N/unit` (or `{rate: N/unit, burst: M}`) and `rate-limit-summary`.

    A window opens with the first event after the previous one closed and lasts `per_s`;
    it lets `count` through, plus what quiet windows left unused, up to `burst`."""

    count: int
    per_s: int
    burst: int
    summary: bool = False  #: send one summary of what was suppressed at the window's end
    text: str = ""  #: as written, e.g. "3/h", for records and messages


@dataclass(frozen=True)
class Route:
    name: str
    input: str | None = None  #: inline Rego rule body
    input_files: tuple[Path, ...] = ()  #: resolved under REGO_FILTERS_PATH
    actions: tuple[str, ...] = ()
    template: str | None = None
    serialize_actions: bool = False
    plugins: Plugins = field(default_factory=Plugins)
    #: `actions: [{name: x, on: success}]`: when a step of a serialized route runs
    #: ("success" or "failure"); an action not named here runs always (upstream).
    conditions: Mapping[str, str] = field(default_factory=dict)
    rate_limit: RateLimit | None = None  #: counted per matching event, across workers

    def as_rule(self) -> rules.RouteRule:
        return rules.RouteRule(name=self.name, input=self.input, input_files=self.input_files)


@dataclass(frozen=True)
class Template:
    name: str
    rego_package: str | None = None
    body: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Action:
    name: str
    type: str  #: lower-cased, as upstream compares it case-insensitively
    enable: bool
    params: Mapping[str, Any]  #: every other key, as written (secrets stay `$VAR` references)
    #: `runs-on`: the runner that executes it (`postee runner --name`); None: the workers.
    runs_on: str | None = None
    rate_limit: RateLimit | None = None  #: counted per command, across routes and workers


@dataclass(frozen=True)
class PosteeConfig:
    file: Path
    routes: tuple[Route, ...]
    templates: Mapping[str, Template]
    actions: Mapping[str, Action]
    #: A hash of the file and its Rego filters: routed records and commands name it, so
    #: the timeline shows which rules decided, and an action agent can tell a command
    #: issued under other rules.
    version: str = "0" * 12

    def route(self, name: str) -> Route | None:
        return next((r for r in self.routes if r.name == name), None)

    def action_types(self) -> list[str]:
        """The types of its actions, enabled or not, in registry order."""
        present = {action.type for action in self.actions.values()}
        return [kind for kind in SUPPORTED_ACTION_TYPES if kind in present]


def load(
    path: Path, rego_filters_path: Path = Path("rego-filters"), *, with_routes: bool = True
) -> PosteeConfig:
    """Read, validate and type a config file. Raises `ConfigErrors` listing every problem.

    `with_routes=False` (a runner: it executes actions and never routes) leaves the routes
    out, so their Rego files need not exist where the runner runs."""
    text = _read_text(path)
    raw = _without_empty_values(path, _parse_yaml(path, text))
    errors = list(_schema_errors(path, raw))
    errors += [] if errors else list(_rate_errors(path, raw))
    if errors:
        raise ConfigErrors(errors)
    _warn_unknown_keys(path, raw)
    actions = _actions(raw)
    templates = {t["name"]: _template(t) for t in raw.get("templates") or []}
    routes = tuple(_route(r, rego_filters_path) for r in raw.get("routes") or [] if with_routes)
    config = PosteeConfig(
        file=path,
        routes=routes,
        templates=MappingProxyType(templates),
        actions=MappingProxyType(actions),
        version=hashlib.sha256(path.read_bytes()).hexdigest()[:12],
    )
    errors = list(_reference_errors(config, raw))
    if errors:
        raise ConfigErrors(errors)
    return replace(config, version=_version(text, routes))


def _version(text: str, routes: Sequence[Route]) -> str:
    digest = hashlib.sha256(text.encode("utf-8"))
    for rego_file in sorted({f for r in routes for f in r.input_files}):
        digest.update(b"\x00" + str(rego_file).encode() + b"\x00" + rego_file.read_bytes())
    return digest.hexdigest()[:16]


def rule_errors(config: PosteeConfig) -> list[ConfigError]:
    """Compile every route's Rego on its own and report each failure (for `validate`)."""
    return [
        ConfigError(
            err.message,
            file=err.file or config.file,
            where=f"route '{err.route}'",
            key="input-files" if err.file else "input",
        )
        for err in rules.RouteMatcher.check([r.as_rule() for r in config.routes])
    ]


def parse_duration_s(value: int | float | str) -> float:
    """Postee durations: seconds, `N` followed by s, m, h or d, or Go's form wherever
    upstream parses one with `time.ParseDuration` (`1500ms`, `2h45m`, `1.5s`, `300us`)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a duration cannot be negative: {value!r}")
        return float(value)
    text = "".join(value.split())
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    total, position = 0.0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            break
        total += float(part.group(1)) * _DURATION_UNITS[part.group(2)]
        position = part.end()
    if not text or position != len(text):
        raise ValueError(f"not a duration: {value!r}")
    return total


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}


def _whole_seconds(value: int | str | None) -> int | None:
    """Plugin windows are whole seconds (their records say so): a fraction rounds up."""
    return None if value is None else math.ceil(parse_duration_s(value))


# --- reading and structural checks -------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", file=path) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc.reason}", file=path) from exc


def _parse_yaml(path: Path, text: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", file=path) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping (routes, templates, actions)", file=path)
    if "actions" in raw and "outputs" in raw:
        raise ConfigError("give either 'actions' or the older 'outputs', not both", file=path)
    _restore_on_keys(raw)
    return raw


def _restore_on_keys(raw: dict[str, Any]) -> None:
    """YAML 1.1 (PyYAML) reads a bare `on` key as the boolean true: in a route's step
    entries (`{name: x, on: success}`) it is put back as the key `on`."""
    for route in raw.get("routes") or []:
        if not isinstance(route, dict):
            continue
        for key in ("actions", "outputs"):
            steps = route.get(key)
            if isinstance(steps, list):
                route[key] = [
                    {("on" if k is True else k): v for k, v in s.items()}
                    if isinstance(s, dict)
                    else s
                    for s in steps
                ]


@cache
def _schema() -> Mapping[str, Any]:
    schema: Mapping[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _validator(definition: str | None = None) -> jsonschema.Draft202012Validator:
    schema = _schema()
    if definition is not None:
        schema = {**schema, "$ref": f"#/$defs/{definition}"}
        schema = {k: v for k, v in schema.items() if k not in ("type", "properties")}
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(path: Path, raw: Mapping[str, Any]) -> Iterator[ConfigError]:
    for error in sorted(_validator().iter_errors(raw), key=lambda e: list(e.absolute_path)):
        yield _located(path, raw, list(error.absolute_path), _message(error))
    for index, action in enumerate(_action_list(raw)):
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            continue  # already reported by the top-level schema
        problems = list(_action_errors(path, raw, index, action))
        if action.get("enable") is True:
            yield from problems
            continue
        # Upstream loads a disabled action whatever it holds; so do we, and it stays idle.
        for problem in problems:
            log.warning("%s (the action is disabled and stays idle)", problem.describe())


def _action_errors(
    path: Path, raw: Mapping[str, Any], index: int, action: Mapping[str, Any]
) -> Iterator[ConfigError]:
    kind = action_type(action["type"])
    if kind not in SUPPORTED_ACTION_TYPES:
        yield _located(
            path,
            raw,
            [_actions_key(raw), index, "type"],
            f"action type {action['type']!r} is not supported "
            f"(supported: {', '.join(SUPPORTED_ACTION_TYPES)})",
        )
        return
    for error in _validator(f"action-{kind}").iter_errors(action):
        yield _located(path, raw, [_actions_key(raw), index, *error.absolute_path], _message(error))


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _without_empty_values(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """Upstream decodes a key left empty (`aqua-server:`, `url:`) as its zero value, that
    is as not given; so do we, with a warning. A disabled action's empty keys (upstream's
    sample config is full of them) are dropped quietly."""
    cleaned = {k: v for k, v in raw.items() if not _empty(v)}
    for key in sorted(set(raw) - set(cleaned)):
        log.warning("%s: key '%s' is empty and is treated as not given", path, key)
    labels = {"routes": "route", "templates": "template", "actions": "action", "outputs": "action"}
    for section, label in labels.items():
        if not isinstance(cleaned.get(section), list):
            continue
        items = []
        for item in cleaned[section]:
            if not isinstance(item, dict):
                items.append(item)
                continue
            kept = {k: v for k, v in item.items() if not _empty(v)}
            dropped = sorted(set(item) - set(kept))
            if isinstance(kept.get("plugins"), dict):
                plugins = kept["plugins"]
                kept["plugins"] = {k: v for k, v in plugins.items() if not _empty(v)}
                dropped += [f"plugins.{k}" for k in sorted(set(plugins) - set(kept["plugins"]))]
            if label != "action" or item.get("enable") is True:
                for key in dropped:
                    log.warning(
                        "%s: %s '%s': key '%s' is empty and is treated as not given",
                        path,
                        label,
                        item.get("name"),
                        key,
                    )
            items.append(kept)
        cleaned[section] = items
    return cleaned


def _message(error: jsonschema.ValidationError) -> str:
    """jsonschema's text, except for "one of these keys" rules, which it words poorly."""
    if error.validator == "oneOf" and isinstance(error.validator_value, list):
        keys = [k for branch in error.validator_value for k in branch.get("required", [])]
        if len(keys) == len(error.validator_value):
            given = [k for k in keys if isinstance(error.instance, dict) and k in error.instance]
            found = f" (found {', '.join(given)})" if given else ""
            return f"needs exactly one of: {', '.join(keys)}{found}"
    described = isinstance(error.schema, dict) and error.schema.get("description")
    if error.validator in ("anyOf", "oneOf") and described:
        return f"{error.instance!r} is not valid: expected {described}"
    if error.validator == "not" and isinstance(error.validator_value, dict):
        keys = error.validator_value.get("required", [])
        return f"give only one of: {', '.join(keys)}"
    return str(error.message)


def _located(path: Path, raw: Mapping[str, Any], where: list[Any], message: str) -> ConfigError:
    """Turn a JSON path like ['routes', 2, 'plugins'] into "route 'x'" and key 'plugins'."""
    section = where[0] if where else None
    if section in ("routes", "templates", "actions", "outputs") and len(where) > 1:
        item = raw[section][where[1]]
        label = {"routes": "route", "templates": "template"}.get(section, "action")
        name = item.get("name") if isinstance(item, dict) else None
        place = f"{label} '{name}'" if name else f"{label} #{where[1] + 1}"
        key = ".".join(str(p) for p in where[2:]) or None
        return ConfigError(message, file=path, where=place, key=key)
    return ConfigError(message, file=path, key=".".join(str(p) for p in where) or None)


def _warn_unknown_keys(path: Path, raw: Mapping[str, Any]) -> None:
    defs = _schema()["$defs"]
    for key in set(raw) - set(_schema()["properties"]):
        log.warning("%s: unknown top-level key '%s' is ignored", path, key)
    sections: list[tuple[str, str, set[str]]] = [
        ("routes", "route", set(defs["route"]["properties"])),
        ("templates", "template", set(defs["template"]["properties"])),
    ]
    for section, label, known in sections:
        for item in raw.get(section) or []:
            for key in sorted(set(item) - known):
                log.warning(
                    "%s: %s '%s': unknown key '%s' is ignored", path, label, item["name"], key
                )
            plugins = item.get("plugins") or {} if section == "routes" else {}
            for key in sorted(
                set(plugins) - set(defs["route"]["properties"]["plugins"]["properties"])
            ):
                log.warning(
                    "%s: route '%s': unknown plugin '%s' is ignored", path, item["name"], key
                )
    for action in _action_list(raw):
        specific = defs.get(f"action-{action_type(action['type'])}", {"properties": {}})
        known = set(defs["action"]["properties"]) | set(specific["properties"])
        for key in sorted(set(action) - known):
            log.warning("%s: action '%s': unknown key '%s' is ignored", path, action["name"], key)


# --- typing -------------------------------------------------------------------------------


def _actions_key(raw: Mapping[str, Any]) -> str:
    return "outputs" if "outputs" in raw else "actions"


def _action_list(raw: Mapping[str, Any]) -> Sequence[Any]:
    items = raw.get(_actions_key(raw)) or []
    return items if isinstance(items, list) else []


def _actions(raw: Mapping[str, Any]) -> dict[str, Action]:
    common = {"name", "type", "enable", "runs-on", "rate-limit", "rate-limit-summary"}
    return {
        item["name"]: Action(
            name=item["name"],
            type=action_type(item["type"]),
            # Upstream requires `enable: true`; a missing key keeps the action off there too.
            enable=bool(item.get("enable", False)),
            params=MappingProxyType({k: v for k, v in item.items() if k not in common}),
            runs_on=item.get("runs-on"),
            rate_limit=_rate_limit(item),
        )
        for item in _action_list(raw)
    }


_RATE = re.compile(r"(\d+)/(\d*)([smhd])")
_RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _rate_limit(item: Mapping[str, Any]) -> RateLimit | None:
    """The item's `rate-limit` (already checked by the schema and `_rate_errors`)."""
    given = item.get("rate-limit")
    if given is None:
        return None
    text = given["rate"] if isinstance(given, dict) else given
    count, per_s = parse_rate(text)
    burst = given.get("burst", count) if isinstance(given, dict) else count
    summary = bool(item.get("rate-limit-summary", False))
    return RateLimit(count, per_s, max(burst, count), summary, "".join(text.split()))


def parse_rate(text: str) -> tuple[int, int]:
    """`N/unit` or `N/Kunit` as (count, window in seconds); ValueError when not."""
    match = _RATE.fullmatch("".join(str(text).split()))
    if match is None:
        raise ValueError(f"not a rate: {text!r} (write N/s, N/m, N/h or N/d, e.g. 3/h)")
    count, many, unit = match.groups()
    return int(count), int(many or 1) * _RATE_UNITS[unit]


def _template(item: Mapping[str, Any]) -> Template:
    return Template(
        name=item["name"],
        rego_package=item.get("rego-package"),
        body=item.get("body"),
        url=item.get("url"),
    )


def _steps(item: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """A route's `actions` as (name, `on` or None): plain names, or `{name, on}` entries."""
    entries = item.get("actions") or item.get("outputs") or []
    return [(e, None) if isinstance(e, str) else (e["name"], e.get("on")) for e in entries]


def _route(item: Mapping[str, Any], rego_filters_path: Path) -> Route:
    plugins = item.get("plugins") or {}
    timeout = plugins.get("aggregate-message-timeout")
    unique_timeout = plugins.get("unique-message-timeout")
    steps = _steps(item)
    return Route(
        name=item["name"],
        input=item.get("input") or None,
        input_files=tuple(rego_filters_path / f for f in item.get("input-files") or []),
        actions=tuple(name for name, _ in steps),
        conditions=MappingProxyType({n: on for n, on in steps if on and on != "always"}),
        rate_limit=_rate_limit(item),
        template=item.get("template") or None,
        serialize_actions=bool(item.get("serialize-actions", item.get("serialize-outputs", False))),
        plugins=Plugins(
            aggregate_message_number=plugins.get("aggregate-message-number"),
            aggregate_message_timeout_s=_whole_seconds(timeout),
            unique_message_props=tuple(plugins.get("unique-message-props") or ()),
            unique_message_timeout_s=_whole_seconds(unique_timeout),
        ),
    )


def _rate_errors(path: Path, raw: Mapping[str, Any]) -> Iterator[ConfigError]:
    """What the schema cannot say about `rate-limit` and `rate-limit-summary`."""
    places = [("route", r) for r in raw.get("routes") or []]
    places += [("action", a) for a in _action_list(raw)]
    for label, item in places:
        where = f"{label} '{item.get('name')}'"
        given = item.get("rate-limit")
        if given is None:
            if "rate-limit-summary" in item:
                yield ConfigError(
                    "needs a rate-limit to summarise",
                    file=path,
                    where=where,
                    key="rate-limit-summary",
                )
            continue
        text = given.get("rate") if isinstance(given, dict) else given
        key = "rate-limit.rate" if isinstance(given, dict) else "rate-limit"
        try:
            count, _ = parse_rate(str(text))
        except ValueError as exc:
            yield ConfigError(str(exc), file=path, where=where, key=key)
            continue
        if count < 1:
            yield ConfigError(
                f"{text!r} lets nothing through: the count must be at least 1",
                file=path,
                where=where,
                key=key,
            )
        burst = given.get("burst") if isinstance(given, dict) else None
        if isinstance(burst, int) and burst < count:
            yield ConfigError(
                f"burst {burst} is below the rate's count {count}: it must be at least that",
                file=path,
                where=where,
                key="rate-limit.burst",
            )


def _condition_errors(config: PosteeConfig, raw: Mapping[str, Any]) -> Iterator[ConfigError]:
    """`on:` belongs to the steps of a serialized route after the first."""
    for item in raw.get("routes") or []:
        route = config.route(item["name"])
        if route is None:
            continue
        where = f"route '{route.name}'"
        for index, (name, on) in enumerate(_steps(item)):
            if on is None:
                continue
            if not route.serialize_actions:
                yield ConfigError(
                    f"action '{name}' has 'on: {on}', but the route's actions run side by "
                    "side: 'on' needs serialize-actions: true",
                    file=config.file,
                    where=where,
                    key=f"actions.{index}.on",
                )
            elif index == 0 and on != "always":
                yield ConfigError(
                    f"action '{name}' is the first step: no step runs before it, so "
                    f"'on: {on}' could never be decided",
                    file=config.file,
                    where=where,
                    key=f"actions.{index}.on",
                )


def _reference_errors(config: PosteeConfig, raw: Mapping[str, Any]) -> Iterator[ConfigError]:
    yield from _duplicates(config.file, "route", [r["name"] for r in raw.get("routes") or []])
    yield from _duplicates(config.file, "action", [a["name"] for a in _action_list(raw)])
    yield from _duplicates(config.file, "template", [t["name"] for t in raw.get("templates") or []])
    yield from _condition_errors(config, raw)
    for route in config.routes:
        where = f"route '{route.name}'"
        for name in route.actions:
            action = config.actions.get(name)
            if action is None:
                yield ConfigError(
                    f"names action '{name}', which is not defined",
                    file=config.file,
                    where=where,
                    key="actions",
                )
            elif not action.enable:
                log.warning(
                    "%s: %s: action '%s' is not enabled (enable: true) and will not run",
                    config.file,
                    where,
                    name,
                )
        if route.template and route.template not in config.templates:
            yield ConfigError(
                f"names template '{route.template}', which is not defined",
                file=config.file,
                where=where,
                key="template",
            )
        for rego_file in route.input_files:
            if not rego_file.is_file():
                yield ConfigError(
                    f"Rego file not found: {rego_file}",
                    file=config.file,
                    where=where,
                    key="input-files",
                )


def _duplicates(file: Path, label: str, names: Sequence[str]) -> Iterator[ConfigError]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            yield ConfigError(
                f"{label} name '{name}' is defined twice",
                file=file,
                where=f"{label} '{name}'",
                key="name",
            )
        seen.add(name)
