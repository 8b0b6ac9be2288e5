"""`postee replay`: put a time window of past events through today's routes again.

Reads `<prefix>.events` from the window's start (seek by timestamp) to its end, keeps
what `--route` and `--filter` select, and writes each event unchanged to `<prefix>.replay`
under its original id, with the replay headers. The router consumes the replay topic with
the current config; commands carry the replay id, so their ids differ from the original
run's, and in dry-run mode (the default) actions only describe what they would do.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams import records, tracing
from streams.errors import EventError
from streams.rules import RouteMatcher, RuleEvaluationError
from streams.settings import Settings

__all__ = ["ReplayPlan", "ReplaySummary", "collect_results", "replay"]


@dataclass(frozen=True)
class ReplayPlan:
    start: datetime
    end: datetime
    route: str | None = None  #: keep events this route matches, and evaluate only it
    selector: RouteMatcher | None = None  #: compiled --route / --filter rules
    required: frozenset[str] = frozenset()  #: selector rules an event must all match
    execute: bool = False


@dataclass
class ReplaySummary:
    replay_id: str
    read: int = 0
    replayed: int = 0
    skipped_undecodable: int = 0
    event_ids: list[str] = field(default_factory=list)
    routes: Counter[str] = field(default_factory=Counter)
    commands: int = 0
    routed: int = 0


Progress = Callable[[int, int], None]  # (records read, records to read)


async def replay(settings: Settings, plan: ReplayPlan, progress: Progress) -> ReplaySummary:
    summary = ReplaySummary(replay_id=uuid.uuid4().hex)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await consumer.start()
    await producer.start()
    try:
        ranges = await _window(consumer, settings.topics.name("events"), plan)
        total = sum(stop - first for first, stop in ranges.values())
        progress(0, total)
        for tp, (first, stop) in ranges.items():
            consumer.assign([tp])
            consumer.seek(tp, first)
            position = first
            while position < stop:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=500)
                sent = []
                for message in batch.get(tp, []):
                    position = message.offset + 1
                    if message.offset >= stop:
                        break
                    summary.read += 1
                    sent.append(await _replay_one(producer, settings, plan, summary, message))
                await asyncio.gather(*(f for f in sent if f is not None))  # acked, batch by batch
                progress(summary.read, total)
    finally:
        await producer.stop()
        await consumer.stop()
    return summary


async def _window(
    consumer: AIOKafkaConsumer, topic: str, plan: ReplayPlan
) -> dict[TopicPartition, tuple[int, int]]:
    """Per partition: the first offset at or after the start, and the end offset now."""
    partitions = consumer.partitions_for_topic(topic) or await _partitions(consumer, topic)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    ends = await consumer.end_offsets(tps)
    starts = await consumer.offsets_for_times(
        {tp: int(plan.start.timestamp() * 1000) for tp in tps}
    )
    stops = await consumer.offsets_for_times(
        {tp: int(plan.end.timestamp() * 1000) + 1 for tp in tps}
    )
    window = {}
    for tp in tps:
        first = starts[tp].offset if starts[tp] is not None else ends[tp]
        stop = stops[tp].offset if stops[tp] is not None else ends[tp]
        if stop > first:
            window[tp] = (first, stop)
    return window


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # a topic we never subscribed to
    partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise ValueError(f"topic {topic} does not exist")
    return set(partitions)


async def _replay_one(
    producer: AIOKafkaProducer,
    settings: Settings,
    plan: ReplayPlan,
    summary: ReplaySummary,
    message: ConsumerRecord[bytes, bytes],
) -> asyncio.Future[object] | None:
    """Queue one event on the replay topic when the plan selects it; the send's future."""
    try:
        event = records.decode_event(
            message.value,
            message.headers,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
        )
    except EventError:
        summary.skipped_undecodable += 1
        return None
    if plan.selector is not None:
        try:
            if not plan.required <= plan.selector.evaluate(event.payload):
                return None
        except RuleEvaluationError:
            return None
    mode = "execute" if plan.execute else "dry-run"
    replay_headers = [
        (records.HEADER_EVENT_ID, event.event_id.encode()),
        (records.HEADER_SOURCE, b"replay"),
        (records.HEADER_RECEIVED_AT, (event.received_at or "").encode()),
        (records.HEADER_CONTENT_TYPE, b"application/json"),
        (records.HEADER_REPLAY_OF, event.event_id.encode()),
        (records.HEADER_REPLAY_ID, summary.replay_id.encode()),
        (records.HEADER_REPLAY_MODE, mode.encode()),
    ]
    if plan.route:
        replay_headers.append((records.HEADER_ROUTE, plan.route.encode()))
    # A new trace, linked to the original's (the original record's headers).
    with tracing.replay(event.event_id, summary.replay_id, mode, message.headers):
        future: asyncio.Future[object] = await producer.send(
            settings.topics.name("replay"),
            message.value,
            key=event.event_id.encode(),
            headers=tracing.inject(replay_headers),
        )
    summary.replayed += 1
    summary.event_ids.append(event.event_id)
    return future


async def collect_results(
    settings: Settings, summary: ReplaySummary, since: datetime, deadline_s: float
) -> bool:
    """Read the routed records of this replay from the outcomes topic into the summary;
    True when every replayed event's decision arrived before the deadline."""
    waiting = set(summary.event_ids)
    topic = settings.topics.name("outcomes")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(tps)
        # The ends first: a routed record written between the two reads is then found by
        # its time. Read the other way round, it fell between them: no record at `since`
        # yet, so we seeked to an end read after it was written, and it was never counted
        # (CI saw "routed 48/50" while the worker had routed all 50).
        ends = await consumer.end_offsets(tps)
        found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        for tp in tps:
            consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])
        end = time.monotonic() + deadline_s
        while waiting and time.monotonic() < end:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                for message in messages:
                    _count(summary, message.value, waiting)
        return not waiting
    finally:
        await consumer.stop()


def _count(summary: ReplaySummary, raw: bytes | None, waiting: set[str]) -> None:
    try:
        record = json.loads(raw or b"")
    except ValueError:
        return
    if record.get("kind") != "routed" or record.get("replay_id") != summary.replay_id:
        return
    waiting.discard(record["event_id"])
    summary.routed += 1
    summary.routes.update(record.get("routes", []))
    summary.commands += len(record.get("commands", []))
