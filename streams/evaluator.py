"""The engine side of routing: everything Rego does for one event, returned as plain data.

An `Evaluator` is built from an `EngineSpec` (the routes and templates the main process
has already loaded and checked), compiles them once, and then turns the raw bytes of an
event into an `Evaluation`: the matched routes and the rendered templates of those routes.
It runs inside the evaluator processes of `eval_pool.py`, so no engine failure, however
built, reaches the process that holds the event loop. No Faust, no asyncio.

Two things keep the engine's cost down, because converting the input is most of it
(rego-cpp parses the input text at ~0.2 ms per hundred values, and worse than linearly):

- `input_refusal` (called in the main process, before anything is sent) refuses events
  with more values, or a longer string, than the bounds in `EngineSettings`;
- the routes get only the parts of the event they read (`input_paths`): when every
  reference to `input` in the route modules is a static path (`input.a.b`,
  `input["k"]`), the engine sees an event pruned to those subtrees; any other use of
  `input` (bare, `input[x]`, `with input`, an interpolated string) turns pruning off.
  Templates always get the whole event.

Routes are pure functions of the input they read, so the evaluator remembers the last
`DECISION_CACHE_SIZE` decisions, keyed by that input's text (the pruned event, when
pruning is on): alerts come in storms of events that differ only in fields no route
reads (a timestamp, a pid), and those then skip the engine. Rules that call a built-in
whose value changes from call to call (`time.now_ns`, `rand.*`, `uuid.*`, `http.send`,
...) turn the cache off. Templates are rendered for every event, never remembered.

Silences with a Rego matcher (`silences.py`) change while the worker runs, so they cannot
be part of the spec compiled at start. The router sends the active ones, as (id, rule
body) pairs, with each event; `evaluate` compiles a set the first time it sees it (one
bundle, like the routes: one engine call per event) and keeps the last few sets, so a
set costs one compile per process, not one per event. They are evaluated on the whole
event (never the routes' pruned one) in the same job as the routes: no extra round trip,
and never on the event loop. A rule that does not compile is left out of its set and
named in `Evaluation.silence_errors`.
"""

from __future__ import annotations

import collections
import json
import pickle
import re
import signal
import socket
import struct
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from streams import rego
from streams.rules import RouteMatcher, RouteRule, RuleCompileError, RuleEvaluationError
from streams.templates import TemplateError, TemplateRenderer

if TYPE_CHECKING:  # evaluator processes do not import the config (and its actions)
    from streams.config import PosteeConfig

__all__ = [
    "DECISION_CACHE_SIZE",
    "HEADER",
    "READY",
    "STACK_BYTES",
    "Decisions",
    "EngineSpec",
    "Evaluation",
    "Evaluator",
    "SilenceRules",
    "input_paths",
    "input_refusal",
    "project",
    "serve",
]

Path = tuple[str, ...]
#: Rule silences handed to `Evaluator.evaluate`: (silence id, Rego rule body), sorted.
SilenceRules = tuple[tuple[str, str], ...]

#: Compiled rule-silence sets an evaluator keeps (the set changes only when silences do).
MAX_SILENCE_SETS = 4
#: Route decisions an evaluator remembers (see the module docstring), and the longest
#: engine input (characters) it remembers one for: at most ~8 MiB of keys per process.
DECISION_CACHE_SIZE = 4096
DECISION_KEY_CHARS = 2048
#: Built-ins whose result is not a function of their arguments: a rule calling one may
#: decide differently on the same input, so its decisions are not remembered.
_UNSTABLE = re.compile(
    r"\b(?:time\.now_ns|rand\.|uuid\.|http\.send|opa\.runtime|net\.lookup_ip_addr)\b"
)

#: Stack of the engine thread in an evaluator process (virtual; only touched pages count).
#: rego-cpp's regex matching recurses once per character: the default 8 MiB stack
#: overflows (SIGSEGV) at about 25,000 characters; this one holds a 1 MiB string.
STACK_BYTES = 512 * 1024 * 1024
#: Frames between the pool and its processes: this length header, then a pickle.
HEADER = struct.Struct("!I")
#: The job id of the message a process sends once it has compiled its engine.
READY = 0


@dataclass(frozen=True)
class EngineSpec:
    """What an evaluator process compiles: picklable, built once by the main process."""

    routes: tuple[Any, ...]  #: `RouteMatcher.spec`
    templates: Mapping[str, Any]  #: `TemplateRenderer.sources`
    route_templates: Mapping[str, str]  #: route name -> template name

    @classmethod
    def of(
        cls, config: PosteeConfig, matcher: RouteMatcher, renderer: TemplateRenderer
    ) -> EngineSpec:
        templates = {r.name: r.template for r in config.routes if r.template is not None}
        return cls(matcher.spec, renderer.sources, templates)


@dataclass(frozen=True)
class Evaluation:
    matched: frozenset[str] = frozenset()
    #: template name -> {"title", "description", "url"}, for the matched routes' templates
    rendered: Mapping[str, Mapping[str, str | None]] = field(default_factory=dict)
    template_errors: Mapping[str, str] = field(default_factory=dict)  #: template -> reason
    error: str | None = None  #: the event could not be evaluated at all
    silenced: frozenset[str] = frozenset()  #: ids of the rule silences matching the event
    silence_errors: Mapping[str, str] = field(default_factory=dict)  #: silence id -> reason


def input_refusal(
    payload: object, max_values: int, max_string_bytes: int, text_bytes: int | None = None
) -> str | None:
    """Why the engine must not see this document (None when it may): more JSON values
    (containers, keys' values and scalars) than `max_values`, or a string (key or value)
    longer than `max_string_bytes` in UTF-8.

    `text_bytes`, the length of the JSON text it was parsed from, spares the walk when it
    settles the answer: every value starts with a character of its own, and no string
    decodes to more UTF-8 bytes than its JSON text holds (an escape only shrinks)."""
    if text_bytes is not None and text_bytes <= min(max_values, max_string_bytes):
        return None
    stack: list[object] = [payload]
    values = 0
    while stack:
        value = stack.pop()
        values += 1
        if values > max_values:
            return f"event has more than {max_values} JSON values (POSTEE_MAX_INPUT_VALUES)"
        if isinstance(value, dict):
            for key in value:
                if len(key) * 4 > max_string_bytes and len(key.encode()) > max_string_bytes:
                    return _too_long(max_string_bytes)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif (
            isinstance(value, str)
            and len(value) * 4 > max_string_bytes
            and len(value.encode()) > max_string_bytes
        ):
            return _too_long(max_string_bytes)
    return None


def _too_long(limit: int) -> str:
    return f"event has a string longer than {limit} bytes (POSTEE_MAX_STRING_BYTES)"


# A string (double-quoted or raw), a comment, or a reference to `input` with its path.
_TOKEN = re.compile(
    r"""(?P<string>\$?"(?:[^"\\\n]|\\.)*"|\$?`[^`]*`)"""
    r"""|(?P<comment>\#[^\n]*)"""
    r"""|(?P<with>\bwith\s+input\b)"""
    r"""|(?<![\w.])input\b(?P<path>(?:\s*\.\s*[A-Za-z_]\w*|\s*\[\s*"(?:[^"\\\n]|\\.)*"\s*\])*)"""
)
_SEGMENT = re.compile(r"""\.\s*([A-Za-z_]\w*)|\[\s*("(?:[^"\\\n]|\\.)*")\s*\]""")


def input_paths(texts: Sequence[str]) -> list[Path] | None:
    """The static paths of `input` that these Rego modules read; None when they may read
    anything (a bare `input`, `input[x]`, `with input`, an interpolated string)."""
    paths: set[Path] = set()
    for text in texts:
        for token in _TOKEN.finditer(text):
            if token.group("string") is not None:
                if token.group("string").startswith("$"):
                    return None
                continue
            if token.group("comment") is not None:
                continue
            if token.group("with") is not None:
                return None
            segments = tuple(
                m.group(1) if m.group(1) is not None else str(json.loads(m.group(2)))
                for m in _SEGMENT.finditer(token.group("path"))
            )
            if not segments:
                return None
            paths.add(segments)
    return sorted(paths, key=lambda path: (len(path), path))


def project(document: Mapping[str, Any], paths: Sequence[Path]) -> dict[str, Any]:
    """The document pruned to `paths` (shortest first): each path's subtree is kept
    whole; a path stops where the document is not an object (that value is kept)."""
    out: dict[str, Any] = {}
    for path in paths:
        source: Any = document
        target = out
        for depth, key in enumerate(path):
            if not isinstance(source, dict) or key not in source:
                break
            value = source[key]
            if depth == len(path) - 1 or not isinstance(value, dict):
                target[key] = value
                break
            existing = target.get(key)
            if existing is value:  # a shorter path already kept it whole
                break
            if existing is None:
                existing = target[key] = {}
            source, target = value, existing
    return out


class Decisions:
    """The routes matched per engine input (and `only` route), least recently used out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: collections.OrderedDict[tuple[str | None, str], frozenset[str]] = (
            collections.OrderedDict()
        )
        self.hits = 0

    def get(self, key: tuple[str | None, str]) -> frozenset[str] | None:
        if len(key[1]) > DECISION_KEY_CHARS:  # never stored: skip hashing a long text
            return None
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return found

    def put(self, key: tuple[str | None, str], matched: frozenset[str]) -> None:
        if self.size <= 0 or len(key[1]) > DECISION_KEY_CHARS:
            return
        self._entries[key] = matched
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class Evaluator:
    """Routes and templates compiled once; one `evaluate` per event. One thread only."""

    def __init__(self, spec: EngineSpec, decision_cache: int = DECISION_CACHE_SIZE) -> None:
        self._matcher = RouteMatcher(*spec.routes)
        self._renderer = TemplateRenderer(spec.templates)
        self._route_templates = dict(spec.route_templates)
        texts = self._matcher.module_texts()
        self._paths = input_paths(texts)
        stable = not any(_UNSTABLE.search(text) for text in texts)
        self.decisions = Decisions(decision_cache if stable else 0)
        #: Compiled rule-silence sets, most recent last (see the module docstring).
        self._silences: dict[SilenceRules, tuple[RouteMatcher | None, dict[str, str]]] = {}

    @property
    def projects(self) -> bool:
        """Whether the routes get a pruned event (see the module docstring)."""
        return self._paths is not None

    def evaluate(
        self, raw: bytes, only: str | None = None, silences: SilenceRules = ()
    ) -> Evaluation:
        """The routes `raw` (a JSON object, already checked by the main process) matches,
        their templates rendered, and which of `silences` ((id, rule body) pairs) match
        it; failures come back in the Evaluation."""
        evaluation = self._evaluate(raw, only)
        if not silences or evaluation.error is not None or not evaluation.matched:
            return evaluation
        matcher, errors = self._silence_matcher(silences)
        silenced: frozenset[str] = frozenset()
        if matcher is not None:
            try:
                payload = json.loads(raw)
                silenced = matcher.evaluate(payload, encoded=_full_text(raw, payload))
            except RuleEvaluationError as exc:
                errors = {**errors, **dict.fromkeys(exc.routes, exc.reason)}
                silenced = exc.matched
        return replace(evaluation, silenced=silenced, silence_errors=errors)

    def _silence_matcher(
        self, silences: SilenceRules
    ) -> tuple[RouteMatcher | None, dict[str, str]]:
        if silences not in self._silences:
            rules = [RouteRule(name=sid, input=body) for sid, body in silences]
            ids = {sid for sid, _ in silences}
            # Each rule is compiled alone first: one bad rule does not hide the others.
            bad = {e.route: e.message for e in RouteMatcher.check(rules) if e.route in ids}
            good = [r for r in rules if r.name not in bad]
            matcher: RouteMatcher | None = None
            try:
                matcher = RouteMatcher.compile(good) if good else None
            except RuleCompileError as exc:
                bad |= {r.name: exc.message for r in good}
            while len(self._silences) >= MAX_SILENCE_SETS:
                self._silences.pop(next(iter(self._silences)))
            self._silences[silences] = (matcher, bad)
        return self._silences[silences]

    def _evaluate(self, raw: bytes, only: str | None) -> Evaluation:
        try:
            payload = json.loads(raw)
            full = _full_text(raw, payload)
            if self._paths is None:
                for_routes: object = payload
                encoded = full
            else:
                for_routes = project(payload, self._paths)
                encoded = rego.encode(for_routes)
            key = (only, encoded.text)
            matched = self.decisions.get(key)
            if matched is None:
                matched = self._matcher.evaluate(for_routes, only=only, encoded=encoded)
                self.decisions.put(key, matched)
        except RuleEvaluationError as exc:
            return Evaluation(error=f"rule evaluation failed: {exc.reason}")
        except Exception as exc:  # reported in the routed record and the DLQ
            return Evaluation(error=f"internal error: {type(exc).__name__}: {exc}")
        rendered: dict[str, Mapping[str, str | None]] = {}
        errors: dict[str, str] = {}
        for name in {self._route_templates[r] for r in matched if r in self._route_templates}:
            try:
                rendered[name] = self._renderer.render(name, payload, full).as_dict()
            except TemplateError as exc:
                errors[name] = str(exc)
        return Evaluation(matched, rendered, errors)

    def render_batch(self, template: str, messages: Sequence[Mapping[str, Any]]) -> Any:
        """A batch through the template's aggregation package (see TemplateRenderer)."""
        return self._renderer.render_batch(template, messages)


def _full_text(raw: bytes, payload: object) -> rego.Encoded:
    """The event as engine input. The raw text as it is, unless it holds escapes that
    rego-cpp would keep literally (`\\u00e9` counts six characters there, `\\/` two)."""
    if b"\\u" in raw or b"\\/" in raw:
        return rego.encode(payload)
    return rego.Encoded(raw.decode("utf-8"))


def serve(fd: int) -> None:
    """An evaluator process (`python -m streams.evaluator FD`, started by the pool): read
    the spec from the socket FD, compile, then answer jobs until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when we stop
    threading.stack_size(STACK_BYTES)
    sock = socket.socket(fileno=fd)
    engine = threading.Thread(target=_answer_jobs, args=(sock,), name="rego-engine")
    engine.start()
    engine.join()


def _answer_jobs(sock: socket.socket) -> None:
    def send(message: object) -> None:
        body = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        sock.sendall(HEADER.pack(len(body)) + body)

    def receive() -> Any:
        header = stream.read(HEADER.size)
        if len(header) < HEADER.size:
            return None  # the worker closed its end
        return pickle.loads(stream.read(HEADER.unpack(header)[0]))  # noqa: S301 - our worker

    stream = sock.makefile("rb")
    evaluator = Evaluator(receive())
    send((READY, None))
    while (job := receive()) is not None:
        job_id, kind, first, second = job
        result: object
        if kind == "event":
            only, silences = second
            result = evaluator.evaluate(first, only, silences)
        else:
            try:
                rendered = evaluator.render_batch(first, second)
                result = ("ok", None if rendered is None else rendered.as_dict())
            except Exception as exc:  # the caller reports it
                result = ("error", str(exc))
        send((job_id, result))


if __name__ == "__main__":
    import sys

    from streams import evaluator as _self  # one copy of the classes the pool pickles

    _self.serve(int(sys.argv[1]))
