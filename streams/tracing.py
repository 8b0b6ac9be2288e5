"""Traces (OpenTelemetry): optional, off by default (`POSTEE_OTEL`, README "Traces").

One alert is one trace. The bridge's POST is a server span (under the sender's
`traceparent` when it sends one); the event record carries its context in its Kafka
headers; the router's span for the event is its child, and every command record carries
that span's context on; each action attempt (workers and runners) is a span under it.
The next step of a serialized route and a plugin's deferred commands keep the context of
the command or event they came from; a closed aggregation batch starts a trace linked to
its members'. A replayed event starts a new trace whose root links to the original's.

Contexts travel as W3C trace context (`traceparent`, `tracestate`) in record headers.
Off, `setup` does nothing, OpenTelemetry is never imported, and every function here
returns at once: no header is added, no span is made, nothing is exported.

Span attributes are ids, names, types and statuses only: never event content or secrets
(an error is recorded by its type or our own category, never by its message).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, overload

from streams.errors import ConfigError
from streams.records import HEADER_TRACEPARENT, HEADER_TRACESTATE, Command, Headers
from streams.settings import Settings

if TYPE_CHECKING:
    from aiohttp import web
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Link, Tracer
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "SERVICE_NAME",
    "Span",
    "attempt",
    "batch",
    "enabled",
    "inject",
    "middlewares",
    "note_event",
    "remember",
    "replay",
    "routing",
    "setup",
    "shutdown",
    "within",
]

SERVICE_NAME = "postee-streams"
TRACE_HEADERS = (HEADER_TRACEPARENT, HEADER_TRACESTATE)
#: The Kafka header list a record gets; None when it has none.
HeaderList = list[tuple[str, bytes]] | None
Attributes = Mapping[str, str | int | bool | Sequence[str]]

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator: TraceContextTextMapPropagator | None = None


def enabled() -> bool:
    return _tracer is not None


def setup(settings: Settings) -> bool:
    """Start exporting traces when the settings turn them on (once per process); True
    when traces are on. The runner's name is a resource attribute of its spans."""
    global _tracer, _provider, _propagator
    if _tracer is not None or not settings.traces.enabled:
        return _tracer is not None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError as exc:
        raise ConfigError(
            f"traces need the OpenTelemetry packages ({exc.name} is missing): "
            "pip install 'postee-streams[otel]'",
            key="POSTEE_OTEL",
        ) from None
    attributes: dict[str, str] = {}
    if not settings.traces.service_name_set:  # else OTEL_SERVICE_NAME names it
        attributes["service.name"] = SERVICE_NAME
    if settings.runner_name:
        attributes["postee.runner.name"] = settings.runner_name
    # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME.
    provider = TracerProvider(resource=Resource.create(attributes))  # OTEL_TRACES_SAMPLER
    for exporter in _exporters(settings.traces.exporters):
        # Batches on a thread of its own: OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_MAX_QUEUE_SIZE...
        provider.add_span_processor(BatchSpanProcessor(exporter))
    _provider, _propagator = provider, TraceContextTextMapPropagator()
    _tracer = provider.get_tracer("streams")
    return True


def shutdown() -> None:
    """Export what is still queued (the SDK also does this at interpreter exit)."""
    if _provider is not None:
        _provider.shutdown()


def _exporters(names: Iterable[str]) -> Iterable[Any]:
    for name in names:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            yield OTLPSpanExporter()  # endpoint, headers, timeout: OTEL_EXPORTER_OTLP_*
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            yield ConsoleSpanExporter()


# --- headers --------------------------------------------------------------------------------


@overload
def inject(headers: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]: ...
@overload
def inject(headers: None = None) -> HeaderList: ...
def inject(headers: HeaderList = None) -> HeaderList:
    """`headers` with the current span's context added (replacing any it had); unchanged
    when traces are off or no span is current."""
    if _propagator is None:
        return headers
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    if not carrier:
        return headers
    kept = [(k, v) for k, v in headers or () if k.lower() not in TRACE_HEADERS]
    return kept + [(k, v.encode("ascii")) for k, v in carrier.items()]


def _context(headers: Headers) -> Context | None:
    """The context in a record's headers (None when off); an empty context without one."""
    if _propagator is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    carrier = {}
    for name, value in items:
        if name.lower() in TRACE_HEADERS and value is not None:
            carrier[name.lower()] = value.decode("ascii", "replace")
    return _propagator.extract(carrier)


def _links(contexts: Iterable[Context | None]) -> list[Link]:
    from opentelemetry import trace

    links = []
    for context in contexts:
        span_context = trace.get_current_span(context).get_span_context()
        if span_context.is_valid:
            links.append(trace.Link(span_context))
    return links


# --- spans ----------------------------------------------------------------------------------


class Span:
    """What call sites do with a span: add ids and names, mark a failure. A no-op span
    (traces off) ignores every call."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def set(self, name: str, value: str | int | bool | Sequence[str] | None) -> None:
        if self._span is not None and value is not None:
            self._span.set_attribute(name, value)

    def fail(self, category: str) -> None:
        """Error status, described by `category`: our own words, never event content."""
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_attribute("error.type", category)
            self._span.set_status(Status(StatusCode.ERROR, category))

    def status(self, status: str, final: bool) -> None:
        """An attempt's outcome status; a failed attempt is an error span."""
        self.set("postee.status", status)
        self.set("postee.final", final)
        if status == "failed":
            self.fail("attempt failed")


_NO_SPAN = Span()


class _Scope:
    """A span current for a `with` block (or, with no name, a context made current and
    no span); an exception that escapes it is recorded by its type only."""

    def __init__(
        self,
        name: str | None,
        context: Context | None,
        kind: str = "internal",
        attributes: Attributes | None = None,
        links: Sequence[Link] = (),
    ) -> None:
        self._name, self._context, self._kind = name, context, kind
        self._attributes, self._links = attributes, links
        self._active: Any = None
        self._token: Any = None
        self._span = _NO_SPAN

    def __enter__(self) -> Span:
        from opentelemetry import context as otel_context
        from opentelemetry.trace import SpanKind

        assert _tracer is not None
        if self._name is None:
            self._token = otel_context.attach(self._context or otel_context.get_current())
            return _NO_SPAN
        self._active = _tracer.start_as_current_span(
            self._name,
            context=self._context,
            kind=SpanKind[self._kind.upper()],
            attributes=self._attributes,
            links=self._links,
            record_exception=False,  # its message may quote the event
            set_status_on_exception=False,
        )
        self._span = Span(self._active.__enter__())
        return self._span

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            from opentelemetry import context as otel_context

            otel_context.detach(self._token)
            return
        if kind is not None:
            self._span.fail(kind.__name__)
        self._active.__exit__(kind, exc, tb)


class _NoScope:
    def __enter__(self) -> Span:
        return _NO_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_NO_SCOPE = _NoScope()
Scope = _Scope | _NoScope


def within(headers: Headers) -> Scope:
    """Make the context in a record's headers current for a block, with no span of its
    own: what the block sends carries the context on."""
    if _tracer is None:
        return _NO_SCOPE
    return _Scope(None, _context(headers))


def note_event(event_id: str) -> None:
    """Name the event on the current span (the bridge's request)."""
    if _tracer is not None:
        from opentelemetry import trace

        trace.get_current_span().set_attribute("postee.event.id", event_id)


def routing(headers: Headers, config_version: str) -> Scope:
    """The router's span for one event record: a child of the record's context."""
    if _tracer is None:
        return _NO_SCOPE
    attributes = {"postee.config.version": config_version}
    return _Scope("route event", _context(headers), "consumer", attributes)


def attempt(command: Command, number: int, runner: str | None) -> Scope:
    """The span of one attempt of a command: a child of the command's context (current)."""
    if _tracer is None:
        return _NO_SCOPE
    attributes: dict[str, str | int | bool] = {
        "postee.event.id": command.event_id,
        "postee.command.id": command.command_id,
        "postee.route": command.route,
        "postee.action.name": command.action,
        "postee.action.type": command.type,
        "postee.attempt": number,
        "postee.dry_run": command.dry_run,
    }
    if runner:
        attributes["postee.runner.name"] = runner
    return _Scope(f"action {command.type}", None, "internal", attributes)


def replay(event_id: str, replay_id: str, mode: str, original: Headers) -> Scope:
    """A replayed event's root span: a new trace, linked to the original record's."""
    if _tracer is None:
        return _NO_SCOPE
    from opentelemetry.context import Context

    attributes = {"postee.event.id": event_id, "postee.replay.id": replay_id, "postee.mode": mode}
    links = _links([_context(original)])
    return _Scope("replay event", Context(), "producer", attributes, links)


def remember(batch: dict[str, Any]) -> dict[str, Any]:
    """An aggregation batch that also keeps the current context (its member's)."""
    if _propagator is None:
        return batch
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return {**batch, "traces": [*batch.get("traces", []), carrier]} if carrier else batch


def batch(state: Mapping[str, Any]) -> Scope:
    """A closed aggregation batch's span: a new trace linked to every member's."""
    if _tracer is None or _propagator is None:
        return _NO_SCOPE
    from opentelemetry.context import Context

    members = [_propagator.extract(c) for c in state.get("traces", [])]
    attributes = {"postee.batch.id": str(state.get("batch_id")), "postee.route": state["route"]}
    return _Scope("close batch", Context(), "internal", attributes, _links(members))


# --- the bridge -----------------------------------------------------------------------------

Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


def middlewares() -> list[Any]:
    """The bridge's server span per POST (none when off): under the sender's
    `traceparent` header, named by the route pattern, with the response status."""
    if _tracer is None:
        return []
    from aiohttp import web

    @web.middleware
    async def trace_posts(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "POST" or _propagator is None:
            return await handler(request)
        info = request.match_info.route.resource
        path = info.canonical if info is not None else "unmatched"
        attributes = {"http.request.method": "POST", "http.route": path}
        context = _propagator.extract(request.headers)
        with _Scope(f"POST {path}", context, "server", attributes) as span:
            response = await handler(request)
            span.set("http.response.status_code", response.status)
            if response.status >= 500:
                span.fail(str(response.status))
            return response

    return [trace_posts]
