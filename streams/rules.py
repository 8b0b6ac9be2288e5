"""Route rules: compile every route's Rego once, match each event with one engine call.

Postee v2 semantics: inline `input` text becomes `package postee` / `default allow =
false` / `allow { <lines> }` (lines ANDed); `input-files` replace it and are ORed; a route
with neither matches every object event; a non-object event matches nothing.

Upstream compiles one policy per route per event. Here each route's modules move into
package `postee.routes.r<index>` (route names may hold any character), a gathering module
collects `matches contains "r<index>"`, and all is built once into one regopy bundle: an
event costs one `set_input` and one `query_bundle_entrypoint`. Each route's `allow` is
also an entrypoint, for `evaluate(only=...)` and to name the route when evaluation fails.

regopy is not thread-safe: a RouteMatcher must be used from a single thread.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import regopy

from streams import rego, rego_compat

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
_ERROR_MSG = re.compile(r"\(errormsg \d+:(.*)\)$", re.MULTILINE)
_LOCATION = re.compile(r"\d+:(r\d+/\w+\.rego)\|(\d+)\|")
#: rego-cpp limits that upstream (OPA) rules run into, with the way around them.
_HINTS = {
    "Invalid bracket argument": "rego-cpp cannot pass a `[_]` reference straight to a"
    " built-in; bind it first: `some x in input.list; startswith(x.id, ...)`",
    "Invalid collection": "rego-cpp cannot read `some k, v in x` inside a comprehension;"
    " write `v := x[k]` there instead",
}


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
    """The engine could not evaluate an event: input too deep/big, or failing `routes`
    (`matched` then holds the routes that still matched, should the caller want them)."""

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
    """Blank a `default x = v` that another file of the route already declared: each
    standalone filter says `default allow = false`, and Rego rejects the repeat."""

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
    if not body.strip():
        return []
    header = f"package postee.routes.r{index}\ndefault allow = false\nallow {{\n"
    return [_Module(f"r{index}/input.rego", f"{header}{body}\n}}\n", rule.name, None, 3)]


def _build(modules: Sequence[_Module], entrypoints: Sequence[str]) -> regopy.Bundle:
    return rego.build([(m.name, m.text) for m in modules], entrypoints)


def _explain(text: str, modules: Sequence[_Module], route: str = "") -> list[RuleCompileError]:
    """One error per `(error ...)` s-expression of regopy, located in the user's text."""
    by_name = {module.name: module for module in modules}
    # An error without a location still belongs to the route, and to its file if only one.
    file = modules[0].file if len(modules) == 1 else None
    starts = [m.start() for m in _ERROR_START.finditer(text)] or [0]
    errors = []
    for start, end in itertools.pairwise([*starts, len(text)]):
        block = text[start:end]
        msg = _ERROR_MSG.search(block)
        message = msg.group(1) if msg else block.strip()[:300] or "engine error"
        hint = f"; {_HINTS[message]}" if message in _HINTS else ""
        # Locations read "<length>:<module name>|<byte offset>|<length>".
        at = _LOCATION.search(block)
        if at is None or at.group(1) not in by_name:
            errors.append(RuleCompileError(route, message + hint, file))
            continue
        module = by_name[at.group(1)]
        before = rego_compat.rewrite(module.text).encode()[: int(at.group(2))]
        line = before.count(b"\n") + 1 - module.header_lines
        column = len(before) - before.rfind(b"\n")
        where = f" (line {line}, column {column})"
        errors.append(RuleCompileError(module.route, message + where + hint, module.file))
    return errors


def _check_route(index: int, modules: Sequence[_Module]) -> None:
    """Compile one route alone, then run it once on `{}`: some structural errors
    (`allow` written as a function) surface only at evaluation, better now than per event."""
    bundle = _build(modules, [_allow(index)])
    runner = rego.new_interpreter()
    runner.set_input({})
    rego.query(runner, bundle, _allow(index))


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
            if modules:
                _check_route(index, modules)
        except RuleCompileError as exc:
            errors.append(exc)
        except rego.EngineFailure as exc:
            errors.extend(_explain(str(exc), modules, rule.name))
        else:
            routes[index] = modules
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
    """All routes in one bundle; build it with `compile`. Use it from one thread only."""

    def __init__(self, names: tuple[str, ...], routes: Mapping[int, Sequence[_Module]]) -> None:
        self._names = names
        #: What another process needs to rebuild this matcher (`RouteMatcher(*spec)`).
        self.spec = (names, {i: tuple(modules) for i, modules in routes.items()})
        self._match_all = frozenset(names[i] for i, modules in routes.items() if not modules)
        self._rego = {f"r{i}": i for i, modules in routes.items() if modules}
        self._engine: tuple[regopy.Interpreter, regopy.Bundle] | None = None
        self._thread = rego.OneThread("RouteMatcher")
        if self._rego:
            indexes = list(self._rego.values())
            # A helper library shared by several routes goes in once (same text, same module).
            unique = {m.text: m for i in indexes for m in routes[i]}
            modules = [*unique.values(), _gather_module(indexes)]
            entrypoints = [_GATHER, *(_allow(i) for i in indexes)]
            try:
                self._engine = (rego.new_interpreter(), _build(modules, entrypoints))
            except rego.EngineFailure as exc:
                raise _explain(str(exc), modules, "(all routes)")[0] from None

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

    def module_texts(self) -> list[str]:
        """The Rego text of every route module (to see which input paths they read)."""
        return [module.text for modules in self.spec[1].values() for module in modules]

    def evaluate(
        self, event: object, only: str | None = None, encoded: rego.Encoded | None = None
    ) -> frozenset[str]:
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
        self._thread.enter()
        try:
            rego.set_input(runner, encoded or event)
        except (regopy.RegoError, ValueError, TypeError, OverflowError, RecursionError) as exc:
            raise RuleEvaluationError(f"event cannot be converted for the engine: {exc}") from None
        if only is not None:
            return self._run_routes([self._names.index(only)], frozenset())
        try:
            found = rego.query(runner, bundle, _GATHER)
        except rego.EngineFailure:  # Ask route by route, so the error can name the culprit.
            return self._run_routes(list(self._rego.values()), matched)
        ids = found if isinstance(found, list) else []
        return matched | {self._names[self._rego[str(i)]] for i in ids}

    def _run_routes(self, indexes: Sequence[int], matched: frozenset[str]) -> frozenset[str]:
        """Query route entrypoints one by one, so that a failure names its route."""
        assert self._engine is not None
        failed, reasons = list[str](), list[str]()
        for index in indexes:
            try:
                if rego.query(*self._engine, _allow(index)) is True:
                    matched |= {self._names[index]}
            except rego.EngineFailure as exc:
                failed.append(self._names[index])
                reasons += [error.message for error in _explain(str(exc), [])]
        if failed:
            reason = f"route(s) {', '.join(map(repr, failed))} failed: {'; '.join(reasons)}"
            raise RuleEvaluationError(reason, tuple(failed), matched)
        return matched


def _allow(index: int) -> str:
    return f"postee/routes/r{index}/allow"
