"""The router agent: events in, one `routed` record and the commands out.

For each record of `<prefix>.events`: decode (bad bytes go to the DLQ), evaluate every
route in one engine call, then publish the routed record and the commands and wait for the
broker's ack before taking the next record. Runs with concurrency 1: it will own the
plugin tables (dedupe, aggregation), which need one writer per partition.
"""

from __future__ import annotations

import logging

import faust

from streams import plugins, records, routing
from streams.app import PosteeApp
from streams.errors import EventError
from streams.records import Routed
from streams.rules import RuleEvaluationError

__all__ = ["install"]

log = logging.getLogger(__name__)


def install(app: PosteeApp) -> None:
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            await route_one(app, event)

    app.agent(app.postee_topics.router_input, name="route_events", concurrency=1)(route_events)


async def route_one(app: PosteeApp, event: faust.EventT[bytes]) -> None:
    """Route one record; every failure becomes a record, the loop never dies."""
    raw: bytes | None = event.value
    publisher = app.publisher
    try:
        incoming = records.decode_event(
            raw,
            event.headers,
            topic=event.message.topic,
            partition=event.message.partition,
            offset=event.message.offset,
        )
    except EventError as exc:
        await publisher.send_dlq(raw, stage=exc.stage, reason=exc.reason, event=event)
        return
    try:
        at_ms = plugins.event_time_ms(incoming, int(event.message.timestamp * 1000))
        decision = routing.decide(incoming, app.config, app.matcher, app.renderer, at_ms)
    except RuleEvaluationError as exc:
        await _record_route_failure(app, event, incoming, f"rule evaluation failed: {exc.reason}")
        return
    except Exception as exc:  # a bug must not stop the stream: record it and go on
        log.exception("routing event %s failed", incoming.event_id)
        await _record_route_failure(
            app, event, incoming, f"internal error: {type(exc).__name__}: {exc}"
        )
        return
    await publisher.send(
        publisher.routed(decision.routed),
        *(publisher.command(c) for c in decision.commands),
        *(publisher.plugin_request(r) for r in decision.plugin_requests),
    )


async def _record_route_failure(
    app: PosteeApp, event: faust.EventT[bytes], incoming: records.IncomingEvent, reason: str
) -> None:
    routed = Routed(
        event_id=incoming.event_id,
        source=incoming.source,
        routes=[],
        commands=[],
        at=records.utc_now(),
        error=reason,
        replay_id=incoming.replay_id,
    )
    publisher = app.publisher
    await publisher.send(publisher.routed(routed))
    await publisher.send_dlq(
        event.value, stage="route", reason=reason, event=event, event_id=incoming.event_id
    )
