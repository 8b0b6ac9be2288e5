"""`postee timeline`: the story of one event (or a time window) rebuilt from the topics.

Every record about an event is keyed by its id, so its story sits in one partition per
topic. For one event we compute that partition the way the producer did (murmur2 of the
key), seek by time (a UUIDv7 id carries its arrival time; a positional id names the
event's own record) and read only from there: no whole-topic scans.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.cluster import ClusterMetadata
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import ConsumerRecord

from streams import records
from streams.settings import Settings
from streams.topics import ACTION_TYPES

__all__ = ["Entry", "WindowRow", "describe", "event_timeline", "read_at", "window_timeline"]

#: How far before an event's id time its first record may sit (clock skew, batching).
SEEK_SLACK = timedelta(minutes=1)
_partitioner = DefaultPartitioner()


@dataclass(frozen=True)
class Entry:
    at: datetime  #: the record's Kafka timestamp
    topic: str
    partition: int
    offset: int
    kind: str  #: received, replayed, routed, command, outcome, dlq
    value: Any  #: the record's JSON value (the event itself for received/replayed)
    headers: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "kind": self.kind,
            "headers": self.headers,
            "value": self.value,
        }


async def event_timeline(
    settings: Settings, event_id: str, until: datetime | None = None
) -> list[Entry]:
    """Every record of the event, in order. Without `until` each partition is read from
    the event's time to its end. A caller that knows when the event's latest record was
    written (the UI's index) passes it as `until`: each partition is then read to a minute
    after it, and again over its last minute, which is complete as long as the caller is
    less than a minute behind the topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        # A snapshot of every topic's partitions: once partitions are assigned, the
        # consumer's own metadata covers only those.
        cluster = await consumer._client.fetch_all_metadata()
        entries = []
        since = records.event_time(event_id)
        positional = _positional(event_id)
        if positional is not None:
            record = await read_at(consumer, *positional)
            if record is not None:
                entries.append(_entry(record, "received"))
                since = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        since_ms = _ms(since - SEEK_SLACK) if since else 0
        name = settings.topics.name
        topics = [name("events"), name("replay"), name("outcomes"), name("dlq")]
        topics += [name(f"actions.{kind}") for kind in ACTION_TYPES]
        tps = [tp for t in topics if (tp := _partition_of(cluster, t, event_id)) is not None]
        key = event_id.encode()
        stop_ms = None if until is None else _ms(until + SEEK_SLACK)
        tail_ms = _ms(datetime.now(UTC) - SEEK_SLACK)

        def mine(record: ConsumerRecord[bytes, bytes]) -> bool:
            return bool(record.key == key)

        found = await _read(consumer, tps, since_ms, mine, stop_ms=stop_ms, tail_ms=tail_ms)
        entries += [_entry(r, _kind(r.topic, r)) for r in found]
        # Commands of runners wait in their runners' topics, named by the routed records.
        runners = [name(f"runner.{r}") for r in sorted(_runners(entries))]
        tps = [tp for t in runners if (tp := _partition_of(cluster, t, event_id)) is not None]
        found = await _read(consumer, tps, since_ms, mine, stop_ms=stop_ms, tail_ms=tail_ms)
        entries += [_entry(r, "command") for r in found]
        entries += _pending(entries)
        return sorted(entries, key=lambda e: (e.at, _ORDER.get(e.kind, 9), e.offset))
    finally:
        await consumer.stop()


_ORDER = {
    "received": 0,
    "replayed": 1,
    "redriven": 2,
    "routed": 3,
    "command": 4,
    "outcome": 5,
    "dlq": 6,
    "pending": 7,
}


def _runners(entries: list[Entry]) -> set[str]:
    return {
        str(ref["runs_on"])
        for e in entries
        if e.kind == "routed" and isinstance(e.value, dict)
        for ref in e.value.get("commands", [])
        if isinstance(ref, dict) and ref.get("runs_on")
    }


def _pending(entries: list[Entry]) -> list[Entry]:
    """One entry per routed command with no final outcome yet, naming where it waits: a
    runner (that may be down: its commands wait on the broker) or the workers."""
    finished = {
        e.value.get("command_id")
        for e in entries
        if e.kind == "outcome" and isinstance(e.value, dict) and e.value.get("final", True)
    }
    now = datetime.now(UTC)
    waiting = []
    for e in entries:
        refs = (
            e.value.get("commands", []) if e.kind == "routed" and isinstance(e.value, dict) else []
        )
        for ref in refs:
            if ref.get("command_id") in finished or ref.get("deferred"):
                continue
            runner = ref.get("runs_on")
            where = f"runner {runner}" if runner else "a worker"
            value = {**ref, "waiting_for": where}
            waiting.append(Entry(now, e.topic, e.partition, e.offset, "pending", value))
    return waiting


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _positional(event_id: str) -> tuple[str, int, int] | None:
    topic, _, rest = event_id.partition(":")
    partition, _, offset = rest.partition(":")
    if topic and partition.isdigit() and offset.isdigit():
        return topic, int(partition), int(offset)
    return None


def _partition_of(cluster: ClusterMetadata, topic: str, key: str) -> TopicPartition | None:
    partitions = cluster.partitions_for_topic(topic)
    if not partitions:
        return None
    ordered = sorted(partitions)
    return TopicPartition(topic, _partitioner(key.encode(), ordered, ordered))


async def read_at(
    consumer: AIOKafkaConsumer, topic: str, partition: int, offset: int
) -> ConsumerRecord[bytes, bytes] | None:
    tp = TopicPartition(topic, partition)
    if not consumer.partitions_for_topic(topic) or partition not in consumer.partitions_for_topic(
        topic
    ):
        return None
    end = (await consumer.end_offsets([tp]))[tp]
    if offset >= end:
        return None
    consumer.assign([tp])
    consumer.seek(tp, offset)
    batch = await consumer.getmany(tp, timeout_ms=5000, max_records=1)
    found = batch.get(tp, [])
    return found[0] if found and found[0].offset == offset else None


async def _read(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    since_ms: int,
    keep: Callable[[ConsumerRecord[bytes, bytes]], bool],
    until_ms: int | None = None,
    stop_ms: int | None = None,
    tail_ms: int | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Records that `keep` selects (written by `until_ms` when given), from `since_ms` to
    the end each partition has now; with `stop_ms`, only to the first record written after
    it, and again from `tail_ms` on.

    Every offset is looked up before the first fetch (an offsets request sent while a fetch
    is in flight waits for it), and all partitions are assigned at once (re-assigning one
    by one stalls aiokafka's fetcher).
    """
    ends = await consumer.end_offsets(tps)
    starts = await _offsets(consumer, tps, since_ms, ends)
    ranges = {tp: [(starts[tp], ends[tp])] for tp in tps}
    if stop_ms is not None:
        stops = await _offsets(consumer, tps, stop_ms, ends)
        tails = ends if tail_ms is None else await _offsets(consumer, tps, tail_ms, ends)
        ranges = {
            tp: [(starts[tp], stops[tp]), (max(tails[tp], stops[tp]), ends[tp])] for tp in tps
        }
    todo = {tp: [(a, b) for a, b in spans if a < b] for tp, spans in ranges.items()}
    todo = {tp: spans for tp, spans in todo.items() if spans}
    if not todo:
        return []
    consumer.assign(list(todo))
    for tp, spans in todo.items():
        consumer.seek(tp, spans[0][0])
    found = []
    while todo:
        batch = await consumer.getmany(*todo, timeout_ms=2000, max_records=1000)
        if not batch:
            break
        for tp, messages in batch.items():
            if tp not in todo:
                continue
            first, stop = todo[tp][0]
            for message in messages:
                if message.offset >= stop:
                    break
                written = until_ms is None or message.timestamp <= until_ms
                if message.offset >= first and written and keep(message):
                    found.append(message)
            if messages and messages[-1].offset + 1 >= stop:
                todo[tp].pop(0)
                if todo[tp]:
                    consumer.seek(tp, todo[tp][0][0])
                else:
                    del todo[tp]
    return found


async def _offsets(
    consumer: AIOKafkaConsumer,
    tps: list[TopicPartition],
    at_ms: int,
    ends: dict[TopicPartition, int],
) -> dict[TopicPartition, int]:
    """Per partition, the first offset written at or after `at_ms` (the end if none)."""
    found = await consumer.offsets_for_times({tp: at_ms for tp in tps})
    return {tp: found[tp].offset if found[tp] is not None else ends[tp] for tp in tps}


def _kind(topic: str, record: ConsumerRecord[bytes, bytes]) -> str:
    suffixes = {".events": "received", ".replay": "replayed", ".dlq": "dlq"}
    for suffix, kind in suffixes.items():
        if topic.endswith(suffix):
            return kind
    if topic.rsplit(".", 2)[-2:-1] == ["actions"]:
        return "command"
    value = _json(record.value)
    return str(value.get("kind", "outcome")) if isinstance(value, dict) else "outcome"


def _entry(record: ConsumerRecord[bytes, bytes], kind: str) -> Entry:
    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
    return Entry(
        datetime.fromtimestamp(record.timestamp / 1000, UTC),
        record.topic,
        record.partition,
        record.offset,
        kind,
        _json(record.value),
        headers,
    )


def _json(raw: bytes | None) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return {"undecodable": (raw or b"")[:200].decode("utf-8", "replace")}


# --- describing entries ---


def describe(entry: Entry) -> str:
    """One line about a timeline entry (`postee timeline` and the UI's timeline page)."""
    v, h = entry.value if isinstance(entry.value, dict) else {}, entry.headers
    if entry.kind == "received":
        where = f"{entry.topic}[{entry.partition}]@{entry.offset}"
        return f"via {h.get('postee-source', 'kafka')} on {where}"
    if entry.kind == "replayed":
        return f"replay {h.get('postee-replay-id', '?')} ({h.get('postee-replay-mode', 'dry-run')})"
    if entry.kind == "routed":
        routes = ", ".join(v.get("routes", [])) or "no route matched"
        extra = "".join(f"; {s['route']}: {s['reason']}" for s in v.get("skipped", []))
        replay = f" [replay {v['replay_id']}]" if v.get("replay_id") else ""
        error = f"; error: {v['error']}" if v.get("error") else ""
        version = f" (config {v['config_version']})" if v.get("config_version") else ""
        extra += "".join(
            f"; {s['route']}: silenced by {', '.join(s['silences'])}" for s in v.get("silenced", [])
        )
        return f"routes: {routes}{extra}{replay}{error}{version}"
    if entry.kind == "silenced":
        held = "; ".join(f"{r['route']} by {', '.join(r['silences'])}" for r in v.get("routes", []))
        return f"silenced: {held}"
    if entry.kind == "rate_limited":
        what = f"action {v.get('action')}" if v.get("action") else f"route {v.get('route')}"
        return (
            f"rate limited: {what} allows {v.get('limit')}; #{v.get('suppressed')} over it "
            f"in the window {v.get('window_start')} to {v.get('window_end')}"
        )
    if entry.kind in ("deduplicated", "aggregated"):
        return f"{entry.kind} on route {v.get('route')}: {v.get('decision')} (key {v.get('key')})"
    if entry.kind == "command":
        flags = " dry-run" if v.get("dry_run") else ""
        flags += f" for runner {v['runs_on']}" if v.get("runs_on") else ""
        command = str(v.get("command_id"))[:12]
        return f"{v.get('type')} {v.get('route')}/{v.get('action')} {command}{flags}"
    if entry.kind == "pending":
        after = ", after the earlier actions of its route" if v.get("queued") else ""
        command = str(v.get("command_id"))[:12]
        return (
            f"{v.get('type')} {v.get('route')}/{v.get('action')} {command}: "
            f"waiting for {v.get('waiting_for')}{after}"
        )
    if entry.kind == "outcome":
        detail = v.get("detail", {})
        facts = [
            f"{k}={detail[k]}" for k in ("exit_code", "status_code", "timed_out") if k in detail
        ]
        error = f" - {v['error']}" if v.get("error") else ""
        error += (
            f" ({detail['reason']})" if v.get("status") == "skipped" and "reason" in detail else ""
        )
        error += f" (on runner {v['runner']})" if v.get("runner") else ""
        return (
            f"{v.get('action')} attempt {v.get('attempt')}: {v.get('status')}"
            f" {' '.join(facts)} ({v.get('duration_ms')} ms){error}"
        )
    if entry.kind == "redriven":
        to = v.get("to", {})
        return f"redriven to {to.get('topic')}[{to.get('partition')}]@{to.get('offset')}"
    return f"{v.get('stage')}: {v.get('reason')}"


# --- a time window ------------------------------------------------------------------------


@dataclass
class WindowRow:
    event_id: str
    first_at: datetime
    source: str = ""
    routes: set[str] = field(default_factory=set)
    commands: int = 0
    statuses: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    replays: set[str] = field(default_factory=set)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "first_at": self.first_at.isoformat(),
            "source": self.source,
            "routes": sorted(self.routes),
            "commands": self.commands,
            "outcomes": dict(self.statuses),
            "replays": sorted(self.replays),
        }


async def window_timeline(
    settings: Settings, since: datetime, until: datetime, route: str | None = None
) -> list[WindowRow]:
    """One row per event routed in the window, from the outcomes topic alone."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        topic = settings.topics.name("outcomes")
        rows: dict[str, WindowRow] = {}
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        since_ms, until_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
        for record in await _read(consumer, tps, since_ms, lambda r: True, until_ms):
            _fold(rows, record)
        selected: Iterable[WindowRow] = rows.values()
        if route:
            selected = [r for r in selected if route in r.routes]
        return sorted(selected, key=lambda r: r.first_at)
    finally:
        await consumer.stop()


def _fold(rows: dict[str, WindowRow], record: ConsumerRecord[bytes, bytes]) -> None:
    value = _json(record.value)
    if not isinstance(value, dict) or "event_id" not in value:
        return
    at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
    row = rows.setdefault(value["event_id"], WindowRow(value["event_id"], at))
    if value.get("replay_id"):
        row.replays.add(value["replay_id"])
    if value.get("kind") == "routed":
        row.source = row.source or value.get("source", "")
        row.routes.update(value.get("routes", []))
        row.commands += len(value.get("commands", []))
    elif value.get("kind") == "outcome" and value.get("final", True):
        row.statuses[value.get("status", "?")] += 1
