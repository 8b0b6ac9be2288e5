"""Route rules: compile every route's Rego once, match each event with one engine call.

Postee v2 semantics: a route's inline `input` text becomes the body of
`package postee` / `default allow = false` / `allow { <lines> }` (lines are ANDed);
`input-files` replace it and are ORed (each file contributes `allow` bodies); a route
with neither matches every object event; a non-object event matches nothing.

Upstream compiles one policy per route per event. Here every route's modules move into
their own package `postee.routes.r<index>` (index-based: route names may hold any
character), one gathering module collects `matches contains "r<index>"`, and the lot is
built once into a regopy bundle. An event then costs one `set_input` and one
`query_bundle_entrypoint`. Each route's allow rule is also an entrypoint, which serves
`evaluate(only=...)` and pins down which route failed when the combined query errors.

regopy is not thread-safe: a RouteMatcher must be used from a single thread.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import regopy

__all__ = [
    "MAX_INPUT_DEPTH",
    "MAX_INPUT_NODES",
    "RouteMatcher",
    "RouteRule",
    "RuleCompileError",
    "RuleEvaluationError",
]

#: Deepest container nesting handed to the engine. regopy converts input recursively
#: and fails (or worse) on very deep documents; real alerts nest about ten levels.
MAX_INPUT_DEPTH = 64
#: Most JSON values (containers and scalars) handed to the engine for one event.
MAX_INPUT_NODES = 1_000_000

_GATHER = "postee/gather/matches"
_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([^\s#]+)", re.MULTILINE)
_DATA_POSTEE = re.compile(r"\bdata\.postee\b")
_DEFAULT = re.compile(r"^[ \t]*default[ \t]+([\w.]+)[ \t]*:?=[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_ERROR_START = re.compile(r"\(error(?=[\s)])")
_ERROR_MSG = re.compile(rb"\(errormsg (\d+):")
_LENGTH_PREFIX = re.compile(rb"(\d+):")
_OFFSETS = re.compile(rb"\|(\d+)\|\d+")


@dataclass(frozen=True)
class RouteRule:
    """The matching part of one Postee route."""

    name: str
    input: str | None = None  #: inline rule body, one expression per line
    input_files: tuple[Path, ...] = ()  #: already-resolved Rego files


class RuleCompileError(Exception):
    """A route's Rego cannot be read or compiled."""

    def __init__(self, route: str, message: str, file: Path | None = None) -> None:
        self.route, self.file, self.message = route, file, message
        where = f"route {route!r}" + (f", file {str(file)!r}" if file is not None else "")
        super().__init__(f"{where}: {message}")


class RuleEvaluationError(Exception):
    """The engine could not evaluate an event (bad input or a failing route).

    `routes` names the failing routes when known; `matched` holds the routes that
    still matched, so a caller may choose to route the event to them anyway.
    """

    def __init__(
        self, reason: str, routes: tuple[str, ...] = (), matched: frozenset[str] = frozenset()
    ) -> None:
        self.reason, self.routes, self.matched = reason, routes, matched
        super().__init__(reason)


@dataclass(frozen=True)
class _Module:
    name: str  #: engine-side name ("r3/f1.rego"); error locations refer to it
    text: str
    route: str
    file: Path | None
    header_lines: int = 0  #: lines we put before the user's text


class _EngineFailure(Exception):
    """Raw regopy error text (an s-expression), to be explained by _explain."""


def _new_interpreter() -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    # regopy prints compile errors to the process's stdout at its default level.
    interpreter.log_level = regopy.LogLevel.NONE
    return interpreter


def _inline_module(index: int, rule: RouteRule, body: str) -> _Module:
    header = f"package postee.routes.r{index}\ndefault allow = false\nallow {{\n"
    return _Module(f"r{index}/input.rego", f"{header}{body}\n}}\n", rule.name, None, 3)


def _file_modules(index: int, rule: RouteRule) -> list[_Module]:
    modules: list[_Module] = []
    seen_defaults: set[tuple[str, str]] = set()
    routed = False
    for number, path in enumerate(rule.input_files):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise RuleCompileError(rule.name, f"cannot read input file: {exc}", path) from None
        package = _PACKAGE.search(text)
        if package is None:
            raise RuleCompileError(rule.name, "no `package` line", path)
        name = package.group(1)
        if name == "postee" or name.startswith(("postee.", "postee[")):
            # Move the file (and its references to data.postee) under the route's own
            # package; keep line numbers intact so error locations stay true.
            start, end = package.span(1)
            text = f"{text[:start]}postee.routes.r{index}{name[6:]}{text[end:]}"
            text = _DATA_POSTEE.sub(f"data.postee.routes.r{index}", text)
            text = _drop_repeated_defaults(text, seen_defaults)
            routed = True
        # Other packages are helper libraries, reachable as upstream would (data.<pkg>).
        modules.append(_Module(f"r{index}/f{number}.rego", text, rule.name, path))
    if not routed:
        raise RuleCompileError(
            rule.name, "no input file declares `package postee`, so the route could never match"
        )
    return modules


def _drop_repeated_defaults(text: str, seen: set[tuple[str, str]]) -> str:
    """Blank a `default x = v` another file of the route already declared.

    Self-contained filter files each say `default allow = false`; Rego rejects the
    repeat, yet ORing such files is exactly what input-files are for.
    """

    def blank(match: re.Match[str]) -> str:
        key = (match.group(1), match.group(2).split("#")[0].strip())
        if key in seen:
            return ""
        seen.add(key)
        return match.group(0)

    return _DEFAULT.sub(blank, text)


def _route_modules(index: int, rule: RouteRule) -> list[_Module]:
    """The route's modules; empty for a match-all route."""
    if rule.input_files:
        return _file_modules(index, rule)
    body = rule.input or ""
    return [_inline_module(index, rule, body)] if body.strip() else []


def _build(modules: Sequence[_Module], entrypoints: Sequence[str]) -> regopy.Bundle:
    builder = _new_interpreter()
    try:
        for module in modules:
            builder.add_module(module.name, module.text)
        bundle = builder.build(None, list(entrypoints))
    except regopy.RegoError as exc:
        raise _EngineFailure(str(exc)) from None
    if not bundle.ok():  # Some compile errors come back this way, not as exceptions.
        raise _EngineFailure(_node_text(bundle.node()))
    return bundle


def _query(interpreter: regopy.Interpreter, bundle: regopy.Bundle, entrypoint: str) -> object:
    """Value of one entrypoint for the current input; None when undefined."""
    try:
        out = interpreter.query_bundle_entrypoint(bundle, entrypoint)
    except json.JSONDecodeError as exc:
        # Some engine errors come back with ok() True and an error s-expression in
        # place of JSON, which regopy's Output then fails to parse.
        raise _EngineFailure(exc.doc) from None
    except regopy.RegoError as exc:
        raise _EngineFailure(str(exc)) from None
    if not out.ok():
        raise _EngineFailure(_node_text(out.node()))
    if len(out) == 0 or not out[0].expressions:
        return None
    value: object = out[0].expressions[0]
    return value


def _node_text(node: regopy.Node) -> str:
    return "\n".join(str(node.at(i).json()) for i in range(len(node)))


def _explain(text: str, modules: Mapping[str, _Module]) -> list[tuple[_Module | None, str]]:
    """Turn regopy's error s-expressions into (module, "message (line L, column C)")."""
    starts = [m.start() for m in _ERROR_START.finditer(text)] or [0]
    found = []
    for start, end in zip(starts, [*starts[1:], len(text)], strict=True):
        block = text[start:end].encode()
        msg = _ERROR_MSG.search(block)
        raw = block.strip()[:300] if msg is None else _prefixed(block, msg)
        message = raw.decode(errors="replace") or "engine error"
        module, where = _locate(block, modules)
        found.append((module, message + where))
    return found


def _prefixed(block: bytes, match: re.Match[bytes]) -> bytes:
    """The length-prefixed string that `match` (ending in "N:") introduces."""
    return block[match.end() : match.end() + int(match.group(1))]


def _locate(block: bytes, modules: Mapping[str, _Module]) -> tuple[_Module | None, str]:
    # Locations read "<len>:<module name>|<byte offset>|<length>".
    for match in _LENGTH_PREFIX.finditer(block):
        name = _prefixed(block, match).decode(errors="replace")
        offsets = _OFFSETS.match(block, match.end() + int(match.group(1)))
        if name in modules and offsets is not None:
            module = modules[name]
            before = module.text.encode()[: int(offsets.group(1))]
            line = before.count(b"\n") + 1 - module.header_lines
            column = len(before) - (before.rfind(b"\n") + 1) + 1
            return module, f" (line {line}, column {column})"
    return None, ""


def _compile_errors(text: str, modules: Sequence[_Module], route: str) -> list[RuleCompileError]:
    by_name = {module.name: module for module in modules}
    # An error without a location still belongs to the route, and to its file if only one.
    file = modules[0].file if len(modules) == 1 else None
    return [
        RuleCompileError(m.route, message, m.file) if m else RuleCompileError(route, message, file)
        for m, message in _explain(text, by_name)
    ]


def _check_route(index: int, modules: Sequence[_Module]) -> None:
    """Compile one route alone, then evaluate it once on `{}`.

    The trial run surfaces structural errors that regopy only reports at evaluation
    time (e.g. `allow` written as a function), at startup instead of on every event.
    """
    bundle = _build(modules, [_allow(index)])
    runner = _new_interpreter()
    runner.set_input({})
    _query(runner, bundle, _allow(index))


def _prepare(rules: Sequence[RouteRule]) -> tuple[dict[int, list[_Module]], list[RuleCompileError]]:
    routes: dict[int, list[_Module]] = {}
    errors: list[RuleCompileError] = []
    names: set[str] = set()
    for index, rule in enumerate(rules):
        if rule.name in names:
            errors.append(RuleCompileError(rule.name, "duplicate route name"))
            continue
        names.add(rule.name)
        try:
            modules = _route_modules(index, rule)
        except RuleCompileError as exc:
            errors.append(exc)
            continue
        try:
            if modules:
                _check_route(index, modules)
            routes[index] = modules
        except _EngineFailure as exc:
            errors.extend(_compile_errors(str(exc), modules, rule.name))
    return routes, errors


def _gather_module(indexes: Sequence[int]) -> _Module:
    lines = ["package postee.gather", "import rego.v1"]
    # `== true`: upstream matches only when data.postee.allow is the boolean true.
    lines += [f'matches contains "r{i}" if data.postee.routes.r{i}.allow == true' for i in indexes]
    return _Module("gather.rego", "\n".join(lines) + "\n", "(all routes)", None)


def _check_input(event: Mapping[object, object]) -> None:
    """Refuse documents the engine would choke on, before any conversion starts."""
    stack: list[tuple[object, int]] = [(event, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_INPUT_NODES:
            raise RuleEvaluationError(f"event has more than {MAX_INPUT_NODES} JSON values")
        if isinstance(value, Mapping | list | tuple):
            if depth > MAX_INPUT_DEPTH:
                raise RuleEvaluationError(f"event nests deeper than {MAX_INPUT_DEPTH} levels")
            children = value.values() if isinstance(value, Mapping) else value
            stack.extend((child, depth + 1) for child in children)


class RouteMatcher:
    """All routes compiled into one bundle. Use each instance from one thread only."""

    def __init__(self, names: tuple[str, ...], routes: Mapping[int, Sequence[_Module]]) -> None:
        self._names = names
        self._match_all = frozenset(names[i] for i, modules in routes.items() if not modules)
        self._rego = {f"r{i}": i for i, modules in routes.items() if modules}
        self._engine: tuple[regopy.Interpreter, regopy.Bundle] | None = None
        self._owner: int | None = None
        if self._rego:
            indexes = list(self._rego.values())
            modules = [*_dedupe([m for i in indexes for m in routes[i]]), _gather_module(indexes)]
            entrypoints = [_GATHER, *(_allow(i) for i in indexes)]
            try:
                self._engine = (_new_interpreter(), _build(modules, entrypoints))
            except _EngineFailure as exc:
                raise _compile_errors(str(exc), modules, "(all routes)")[0] from None

    @classmethod
    def compile(cls, rules: Sequence[RouteRule]) -> RouteMatcher:
        """Compile all routes; raise the first RuleCompileError."""
        routes, errors = _prepare(rules)
        if errors:
            raise errors[0]
        return cls(tuple(rule.name for rule in rules), routes)

    @staticmethod
    def check(rules: Sequence[RouteRule]) -> list[RuleCompileError]:
        """Every compile error of every route (empty when all compile)."""
        routes, errors = _prepare(rules)
        if errors:
            return errors
        try:
            RouteMatcher(tuple(rule.name for rule in rules), routes)
        except RuleCompileError as exc:
            return [exc]
        return []

    @property
    def route_names(self) -> tuple[str, ...]:
        return self._names

    def evaluate(self, event: object, only: str | None = None) -> frozenset[str]:
        """Names of the routes matching `event`; with `only`, of that route alone.

        Raises KeyError for an unknown `only`, RuleEvaluationError when the event is too
        big or deep for the engine or a route fails to evaluate.
        """
        if only is not None and only not in self._names:
            raise KeyError(only)
        if not isinstance(event, Mapping):
            return frozenset()
        _check_input(event)
        matched = self._match_all if only is None else self._match_all & {only}
        if self._engine is None or (only is not None and matched):
            return matched
        runner, bundle = self._engine
        self._enter()
        try:
            runner.set_input(event)
        except (regopy.RegoError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise RuleEvaluationError(f"event cannot be converted for the engine: {exc}") from None
        if only is not None:
            return self._run_routes([self._names.index(only)])
        try:
            found = _query(runner, bundle, _GATHER)
        except _EngineFailure:  # Ask route by route, so the error can name the culprit.
            return matched | self._run_routes(list(self._rego.values()))
        ids = found if isinstance(found, list) else []
        return matched | {self._names[self._rego[str(i)]] for i in ids}

    def _run_routes(self, indexes: Sequence[int]) -> frozenset[str]:
        assert self._engine is not None
        matched, failed, reasons = set[str](), list[str](), list[str]()
        for index in indexes:
            try:
                if _query(*self._engine, _allow(index)) is True:
                    matched.add(self._names[index])
            except _EngineFailure as exc:
                failed.append(self._names[index])
                reasons += [message for _, message in _explain(str(exc), {})]
        if failed:
            reason = f"route(s) {', '.join(map(repr, failed))} failed: {'; '.join(reasons)}"
            raise RuleEvaluationError(reason, tuple(failed), frozenset(matched | self._match_all))
        return frozenset(matched)

    def _enter(self) -> None:
        # regopy interpreters are not thread-safe; fail loudly instead of corrupting.
        caller = threading.get_ident()
        if self._owner is None:
            self._owner = caller
        elif self._owner != caller:
            raise RuntimeError("RouteMatcher used from a second thread; use one per thread")


def _allow(index: int) -> str:
    return f"postee/routes/r{index}/allow"


def _dedupe(modules: Sequence[_Module]) -> list[_Module]:
    """Drop repeats of one helper library shared by several routes (same text)."""
    seen: set[str] = set()
    unique = []
    for module in modules:
        if module.text not in seen:
            seen.add(module.text)
            unique.append(module)
    return unique
