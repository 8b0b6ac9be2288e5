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
from streams.outcomes import Message
from streams.records import Routed
from streams.rules import RuleEvaluationError

__all__ = ["install"]

log = logging.getLogger(__name__)

#: Most records routed per broker round trip, and how long to wait to fill a batch.
BATCH_MAX_RECORDS = 200
BATCH_WAIT_S = 0.005


def install(app: PosteeApp) -> None:
    async def route_events(stream: faust.StreamT[bytes]) -> None:
        # Records are taken in small batches and their output is sent together, so one
        # broker round trip acknowledges many records. Faust acks a batch's records only
        # after this body returns, that is after every send was acknowledged.
        # (take_events is on faust.Stream but missing from its StreamT protocol.)
        batches = stream.take_events(BATCH_MAX_RECORDS, within=BATCH_WAIT_S)  # type: ignore[attr-defined]
        async for batch in batches:
            await app.publisher.send(*(m for event in batch for m in route_one(app, event)))

    app.agent(app.postee_topics.router_input, name="route_events", concurrency=1)(route_events)


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
        log.exception("routing event %s failed", incoming.event_id)
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
    )
    publisher = app.publisher
    return [
        publisher.routed(routed),
        publisher.dlq_for(
            event.value, stage="route", reason=reason, event=event, event_id=incoming.event_id
        ),
    ]
