"""The router agent: events in, one `routed` record and the commands out.

For each record of `<prefix>.events`: decode (bad bytes go to the DLQ), evaluate every
route in one engine call, then publish the routed record and the commands and wait for the
broker's ack before taking the next record. Runs with concurrency 1: it will own the
plugin tables (dedupe, aggregation), which need one writer per partition.
"""

from __future__ import annotations

import asyncio
import logging

import faust

from streams import metrics, plugins, records, routing
from streams.app import PosteeApp
from streams.errors import EventError
from streams.outcomes import Message, ack_after, manual_acks
from streams.records import Routed
from streams.rules import RuleEvaluationError

__all__ = ["install"]

log = logging.getLogger(__name__)

#: Records routed whose output the broker has not acknowledged yet, at most.
MAX_IN_FLIGHT = 1000


def install(app: PosteeApp) -> None:
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        # Each record's output is handed to the producer at once and the record is
        # acknowledged in the background when the broker has it: the loop never waits a
        # round trip per record, and nothing is committed before its output is written.
        manual = manual_acks(stream)
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        async for event in manual.events():
            await in_flight.acquire()
            sent = await app.publisher.enqueue(*route_one(app, event))
            task = asyncio.ensure_future(ack_after(manual, event, sent, app.publisher))
            task.add_done_callback(lambda _: in_flight.release())

    app.agent(app.postee_topics.router_input, name="route_events", concurrency=1)(route_events)


@metrics.timed_routing
def route_one(app: PosteeApp, event: faust.EventT[bytes]) -> list[Message]:
    """What one record yields; every failure becomes a record, the loop never dies."""
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
        return [publisher.dlq_for(raw, stage=exc.stage, reason=exc.reason, event=event)]
    try:
        at_ms = plugins.event_time_ms(incoming, int(event.message.timestamp * 1000))
        decision = routing.decide(incoming, app.config, app.matcher, app.renderer, at_ms)
    except RuleEvaluationError as exc:
        return _route_failure(app, event, incoming, f"rule evaluation failed: {exc.reason}")
    except Exception as exc:  # a bug must not stop the stream: record it and go on
        log.exception(
            "routing event %s failed", incoming.event_id, extra={"event_id": incoming.event_id}
        )
        return _route_failure(app, event, incoming, f"internal error: {type(exc).__name__}: {exc}")
    return [
        publisher.routed(decision.routed),
        *(publisher.command(c) for c in decision.commands),
        *(publisher.plugin_request(r) for r in decision.plugin_requests),
    ]


def _route_failure(
    app: PosteeApp, event: faust.EventT[bytes], incoming: records.IncomingEvent, reason: str
) -> list[Message]:
    routed = Routed(
        event_id=incoming.event_id,
        source=incoming.source,
        routes=[],
        commands=[],
        at=records.utc_now(),
        error=reason,
        replay_id=incoming.replay_id,
        config_version=app.config.version,
    )
    publisher = app.publisher
    return [
        publisher.routed(routed),
        publisher.dlq_for(
            event.value, stage="route", reason=reason, event=event, event_id=incoming.event_id
        ),
    ]
