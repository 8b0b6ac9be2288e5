"""The router agent: events in, one `routed` record and the commands out.

For each record of `<prefix>.events`: decode (bad bytes go to the DLQ), refuse inputs
beyond the engine's bounds, have an evaluator process (`eval_pool.py`) evaluate every
route and render their templates, then publish the routed record and the commands; the
record is acknowledged once the broker has them. Up to `MAX_IN_FLIGHT` records are in
flight, evaluated in parallel by the pool, and published strictly in arrival order, so
per-partition order holds. Runs with concurrency 1.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import faust

from streams import evaluator, metrics, plugins, records, reload, routing, tracing
from streams.app import PosteeApp
from streams.config import PosteeConfig
from streams.errors import EventError
from streams.outcomes import Message, ack_after, manual_acks
from streams.records import Routed
from streams.silence_reader import SilenceBook

__all__ = ["install"]

log = logging.getLogger(__name__)

#: Records routed whose output the broker has not acknowledged yet, at most.
MAX_IN_FLIGHT = 1000
#: Records larger than this are decoded on a thread, off the event loop.
THREAD_DECODE_BYTES = 64 * 1024


_Routing = tuple[faust.EventT[bytes], "asyncio.Future[list[Message]]"]


def install(app: PosteeApp) -> None:
    """The router agent, and the evaluator pool it uses (started with the app)."""
    reload.start_engine(app)
    app.silences = SilenceBook(app.settings)
    app.add_dependency(app.silences)
    app.metrics.watch_silences(lambda: len(app.silences.active(datetime.now(UTC))))

    async def route_events(stream: faust.StreamT[bytes]) -> None:
        manual = manual_acks(stream)
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        routing_order: asyncio.Queue[_Routing | None] = asyncio.Queue()
        publishing = asyncio.ensure_future(_publish(app, manual, routing_order, in_flight))
        try:
            async for event in manual.events():
                await in_flight.acquire()
                routing_order.put_nowait((event, asyncio.ensure_future(route_one(app, event))))
            routing_order.put_nowait(None)
            await publishing
        finally:
            publishing.cancel()

    app.agent(app.postee_topics.router_input, name="route_events", concurrency=1)(route_events)


async def _publish(
    app: PosteeApp,
    stream: faust.StreamT[bytes],
    routing_order: asyncio.Queue[_Routing | None],
    in_flight: asyncio.Semaphore,
) -> None:
    """Publish each record's output in arrival order; each record is acknowledged in the
    background once the broker has its output, so nothing is committed before its output
    is written, and the loop never waits a broker round trip per record."""
    while (item := await routing_order.get()) is not None:
        event, routed = item
        sent = await app.publisher.enqueue(*await routed)
        task = asyncio.ensure_future(ack_after(stream, event, sent, app.publisher))
        task.add_done_callback(lambda _: in_flight.release())


@metrics.timed_routing
async def route_one(app: PosteeApp, event: faust.EventT[bytes]) -> list[Message]:
    """What one record yields, in its span (a child of the record's trace context)."""
    with tracing.routing(event.headers, app.config.version) as span:
        return await _route(app, event, span)


async def _route(app: PosteeApp, event: faust.EventT[bytes], span: tracing.Span) -> list[Message]:
    """What one record yields; every failure becomes a record, the loop never dies."""
    raw: bytes | None = event.value
    publisher = app.publisher
    try:
        if raw is not None and len(raw) > THREAD_DECODE_BYTES:
            # Decoding and counting a big record is Python work of up to a second: on a
            # thread, the event loop still gets the interpreter every switch interval.
            incoming, refused = await asyncio.to_thread(_decode, app, event)
        else:
            incoming, refused = _decode(app, event)
    except EventError as exc:
        span.fail(f"not decodable ({exc.stage})")
        return [publisher.dlq_for(raw, stage=exc.stage, reason=exc.reason, event=event)]
    span.set("postee.event.id", incoming.event_id)
    span.set("postee.replay.id", incoming.replay_id)
    if refused is not None:
        span.fail("input refused")
        return _route_failure(app, event, incoming, f"input refused: {refused}")
    # Taken together: a reload swaps both at once, and this event is decided by the
    # config whose engine evaluated it (its version is the one on the records).
    config, engine = app.config, app.engine
    try:
        if not app.silences.loaded.is_set():  # the silences written before we started
            await app.silences.loaded.wait()
        silences = app.silences.active(datetime.now(UTC))
        rules = tuple(sorted(s.rule_key for s in silences if s.rule_key))
        evaluation = await engine.evaluate(raw or b"", incoming.only_route, rules)
        if evaluation.error is not None:
            span.fail("evaluation failed")
            return _route_failure(app, event, incoming, evaluation.error, config)
        at_ms = plugins.event_time_ms(incoming, int(event.message.timestamp * 1000))
        decision = routing.decide(incoming, config, evaluation, at_ms, silences)
    except Exception as exc:  # a bug must not stop the stream: record it and go on
        log.exception(
            "routing event %s failed", incoming.event_id, extra={"event_id": incoming.event_id}
        )
        span.fail(f"internal error ({type(exc).__name__})")
        reason = f"internal error: {type(exc).__name__}: {exc}"
        return _route_failure(app, event, incoming, reason, config)
    span.set("postee.routes", decision.routed.routes)
    span.set("postee.commands", len(decision.commands))
    held = [publisher.silenced(decision.silenced)] if decision.silenced else []
    return [
        publisher.routed(decision.routed),
        *held,
        *(publisher.command(c) for c in decision.commands),
        *(publisher.plugin_request(r) for r in decision.plugin_requests),
    ]


def _decode(app: PosteeApp, event: faust.EventT[bytes]) -> tuple[records.IncomingEvent, str | None]:
    """The decoded record, and why the engine must not see it (None when it may)."""
    incoming = records.decode_event(
        event.value,
        event.headers,
        topic=event.message.topic,
        partition=event.message.partition,
        offset=event.message.offset,
    )
    limits = app.settings.engine
    refused = evaluator.input_refusal(
        incoming.payload,
        limits.max_input_values,
        limits.max_string_bytes,
        text_bytes=len(event.value),  # not None: decode_event refuses a tombstone
    )
    return incoming, refused


def _route_failure(
    app: PosteeApp,
    event: faust.EventT[bytes],
    incoming: records.IncomingEvent,
    reason: str,
    config: PosteeConfig | None = None,
) -> list[Message]:
    routed = Routed(
        event_id=incoming.event_id,
        source=incoming.source,
        routes=[],
        commands=[],
        at=records.utc_now(),
        error=reason,
        replay_id=incoming.replay_id,
        config_version=(config or app.config).version,
    )
    publisher = app.publisher
    return [
        publisher.routed(routed),
        publisher.dlq_for(
            event.value, stage="route", reason=reason, event=event, event_id=incoming.event_id
        ),
    ]
