"""Shared helpers of the benchmarks: configs, topics, plain-aiokafka I/O, result output.

Everything here talks to Kafka with plain aiokafka clients (no Faust), so the numbers it
produces are the yardstick the Faust worker is measured against.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.table import Table

from streams.settings import IngestSettings

__all__ = [
    "Result",
    "consume_all",
    "cpu_seconds",
    "create_topic",
    "delete_topics",
    "print_results",
    "produce_all",
    "write_config",
]

#: Rule bodies of the routes after the first; `{i}` is the route index. They do not match
#: the TRC-2 sample, except the one every tenth route uses (see `route_rule`).
_MISSES = (
    'input.SigMetadata.ID == "TRC-{i}00"',
    'input.Context.processName == "gdb-{i}"',
    'contains(input.Context.containerImage, "nginx-{i}")',
    'input.Context.podNamespace == "kube-system-{i}"\ninput.SigMetadata.Properties.Severity >= 2',
)
_OTHER_FIELD_HIT = "input.SigMetadata.Properties.Severity >= 3"


@dataclass(frozen=True)
class Result:
    name: str
    events: int
    seconds: float
    #: events/s; for the router (events - 1) / seconds, as the clock starts at the first
    events_per_s: float
    matched_per_event: int | None = None  #: routes matched per event (router rows only)
    #: CPU milliseconds per event of the worker's main process and of its children (the
    #: evaluator processes), between the first and the last record (router rows only).
    main_cpu_ms: float | None = None
    children_cpu_ms: float | None = None


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU seconds of process `pid`, of its live children), user + system, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")

    def of(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return of(pid), sum(of(int(c)) for c in children)


def route_rule(index: int) -> str:
    """Route 0 matches TRC-2; every tenth route from 5 matches another field; the rest miss."""
    if index == 0:
        return 'input.SigMetadata.ID == "TRC-2"'
    if index % 10 == 5:
        return _OTHER_FIELD_HIT
    return _MISSES[index % len(_MISSES)].format(i=index)


def expected_matches(routes: int) -> int:
    return sum(1 for i in range(routes) if i == 0 or i % 10 == 5)


def write_config(directory: Path, routes: int) -> Path:
    """A cfg.yaml with `routes` routes, each pointing at its own (never run) exec action."""
    config = {
        "name": f"bench-{routes}-routes",
        "routes": [
            {"name": f"route-{i}", "input": route_rule(i), "actions": [f"exec-{i}"]}
            for i in range(routes)
        ],
        "actions": [
            {"name": f"exec-{i}", "type": "exec", "enable": True, "exec-script": "true"}
            for i in range(routes)
        ],
    }
    path = directory / f"cfg-{routes}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Create a topic and return once every partition has a serving leader.

    The metadata names a leader before the broker serves the partition; a produce right
    after creation may then fail with NotLeaderForPartition and wait out a retry backoff
    inside the timed window. ListOffsets fails the same way, and aiokafka retries it
    until the partitions are served, so it doubles as the readiness probe.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # As the worker creates its topics: records up to the body limit plus the envelope
        # (the worker checks this at start and refuses smaller topics).
        limit = {"max.message.bytes": str(IngestSettings().max_record_bytes)}
        await admin.create_topics(
            [NewTopic(name, partitions, replication_factor=1, topic_configs=limit)]
        )
    finally:
        await admin.close()
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await probe.start()
    try:
        await probe.end_offsets([TopicPartition(name, p) for p in range(partitions)])
    finally:
        await probe.stop()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with `prefix`; return their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if names:
            await admin.delete_topics(names)
        return names
    finally:
        await admin.close()


async def produce_all(
    bootstrap: str, topic: str, value: bytes | Sequence[bytes], count: int
) -> float:
    """Produce `count` copies of `value`, or the `count` values given (no key, no headers,
    acks=all), pipelined; return the seconds from the first send until the broker
    acknowledged the last one."""
    values = [value] * count if isinstance(value, bytes) else list(value)[:count]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata fetch is not part of the timing
        start = time.perf_counter()
        pending = [await producer.send(topic, v) for v in values]
        await asyncio.gather(*pending)
        return time.perf_counter() - start
    finally:
        await producer.stop()


async def consume_all(
    bootstrap: str,
    topic: str,
    count: int,
    *,
    timeout_s: float,
    on_batch: Callable[[list[Any]], None] | None = None,
    is_alive: Callable[[], bool] = lambda: True,
) -> tuple[float, float]:
    """Read `topic` from the beginning with a fresh, group-less consumer until `count`
    records arrived. Returns (seconds from the first poll, seconds from the first record),
    both up to the arrival of the `count`-th record. Polls; never sleeps."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        start = time.perf_counter()
        first: float | None = None
        seen = 0
        while seen < count:
            now = time.perf_counter()
            if now - start > timeout_s:
                raise TimeoutError(f"{topic}: {seen} of {count} records after {timeout_s:.0f}s")
            if not is_alive():
                raise RuntimeError(f"{topic}: the worker died after {seen} of {count} records")
            batch = await consumer.getmany(timeout_ms=200)
            arrived = time.perf_counter()
            messages = [m for part in batch.values() for m in part]
            if messages and first is None:
                first = arrived
            seen += len(messages)
            if on_batch is not None and messages:
                on_batch(messages)
        assert first is not None
        return arrived - start, arrived - first
    finally:
        await consumer.stop()


def print_results(results: list[Result], as_json: bool, meta: dict[str, Any]) -> None:
    consume = next((r for r in results if r.name == "baseline consume"), None)
    base = consume.events_per_s if consume else None
    if as_json:
        rows = [
            asdict(r) | {"vs_consume": r.events_per_s / base if base else None} for r in results
        ]
        print(json.dumps(meta | {"results": rows}, indent=2))
        return
    kind = "unique" if meta.get("unique") else "identical"
    title = f"route throughput ({meta['events']} {kind} events, {meta['bootstrap']})"
    table = Table(title=title)
    columns = ("case", "events", "seconds", "events/s", "vs consume", "matched/event")
    for column in (*columns, "main ms/ev", "eval ms/ev"):
        table.add_column(column, justify="left" if column == "case" else "right", no_wrap=True)
    for r in results:
        ratio = f"{r.events_per_s / base:.3f}" if base else "-"
        matched = "-" if r.matched_per_event is None else str(r.matched_per_event)
        rate = f"{r.events_per_s:,.0f}"
        cpu = [f"{v:.3f}" if v is not None else "-" for v in (r.main_cpu_ms, r.children_cpu_ms)]
        table.add_row(r.name, str(r.events), f"{r.seconds:.3f}", rate, ratio, matched, *cpu)
    Console(width=160).print(table)
