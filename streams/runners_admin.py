"""`postee runners`: every runner of a deployment, how many of its commands wait, and
what it did last.

Read from the broker alone, with no consumer group of our own: runner names are the
`<prefix>.runner.<name>` topics; the lag is their end offsets minus what consumer group
`<prefix>-runner-<name>` committed (a runner that never ran has all its retained commands
waiting); the group's members say whether the runner is up; the last record of its
ledger changelog is the last command it started or finished.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams import records
from streams.settings import Settings, runner_app_id

__all__ = ["RunnerStatus", "ledger_changelog", "runner_statuses"]

#: How long the last ledger records may take to arrive.
READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RunnerStatus:
    name: str
    topic: str
    end_offset: int  #: commands ever written to its topic (end offsets, summed)
    committed: int | None  #: commands its group has committed past; None: never committed
    lag: int  #: commands waiting: end offset minus committed (or minus the oldest retained)
    state: str  #: its consumer group's state: Stable (up), Empty (down), Dead (never ran)...
    members: int  #: processes in its consumer group now
    last: dict[str, Any] | None  #: its last ledger entry: command_id, state, status, attempt, at

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ledger_changelog(settings: Settings, runner: str) -> str:
    """The changelog topic of runner `runner`'s command ledger (Faust's naming)."""
    return f"{runner_app_id(settings.topics.prefix, runner)}-command-ledger-runner-changelog"


async def runner_statuses(settings: Settings) -> list[RunnerStatus]:
    bootstrap = settings.kafka.bootstrap
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await admin.start()
    await consumer.start()
    try:
        prefix = settings.topics.name("runner.")
        names = sorted(
            t.removeprefix(prefix) for t in await admin.list_topics() if t.startswith(prefix)
        )
        if not names:
            return []
        await consumer._client.force_metadata_update()
        groups = await _groups(admin, [runner_app_id(settings.topics.prefix, n) for n in names])
        statuses = [await _status(admin, consumer, settings, name, groups) for name in names]
        # Last: reading assigns partitions, and then the consumer's metadata covers only those.
        lasts = await _last_entries(consumer, {n: ledger_changelog(settings, n) for n in names})
        return [replace(s, last=lasts.get(s.name)) for s in statuses]
    finally:
        await consumer.stop()
        await admin.close()


async def _status(
    admin: AIOKafkaAdminClient,
    consumer: AIOKafkaConsumer,
    settings: Settings,
    name: str,
    groups: dict[str, tuple[str, int]],
) -> RunnerStatus:
    topic, group = (
        settings.topics.name(f"runner.{name}"),
        runner_app_id(settings.topics.prefix, name),
    )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
    ends = await consumer.end_offsets(tps)
    starts = await consumer.beginning_offsets(tps)
    offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    done = {tp: offsets[tp].offset for tp in tps if tp in offsets and offsets[tp].offset >= 0}
    lag = sum(ends[tp] - max(done.get(tp, starts[tp]), starts[tp]) for tp in tps)
    state, members = groups.get(group, ("Dead", 0))
    return RunnerStatus(
        name=name,
        topic=topic,
        end_offset=sum(ends.values()),
        committed=sum(done.values()) if done else None,
        lag=lag,
        state=state,
        members=members,
        last=None,
    )


async def _groups(admin: AIOKafkaAdminClient, group_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Each group's (state, number of members). One group per request: aiokafka 0.14 fails
    to decode a response that describes several groups when one of them has members."""
    found: dict[str, tuple[str, int]] = {}
    responses = await asyncio.gather(*(admin.describe_consumer_groups([g]) for g in group_ids))
    for response in (r for batch in responses for r in batch):
        for group in response.groups:
            # DescribeGroupsResponse: error_code, group_id, state, protocol_type, protocol,
            # members, ...
            found[group[1]] = (group[2] or "Dead", len(group[5]))
    return found


async def _last_entries(
    consumer: AIOKafkaConsumer, changelogs: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """The last record of each runner's ledger changelog (one partition each), read at once:
    assigning partitions one by one stalls aiokafka's fetcher."""
    # A ledger has the partitions of its runner's topic: RUNNER_PARTITIONS, one.
    runner_of = {
        TopicPartition(t, 0): n for n, t in changelogs.items() if consumer.partitions_for_topic(t)
    }
    if not runner_of:
        return {}
    ends = await consumer.end_offsets(list(runner_of))
    starts = await consumer.beginning_offsets(list(runner_of))
    todo = {tp for tp in runner_of if ends[tp] > starts[tp]}
    if not todo:
        return {}
    consumer.assign(list(todo))
    for tp in todo:
        consumer.seek(tp, ends[tp] - 1)
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + READ_TIMEOUT_S
    while todo and time.monotonic() < deadline:
        batch = await consumer.getmany(*todo, timeout_ms=1000)
        for tp, messages in batch.items():
            if messages:
                found[runner_of[tp]] = _entry(messages[-1].key, messages[-1].value)
                todo.discard(tp)
    return found


def _entry(key: bytes | None, value: bytes | None) -> dict[str, Any]:
    entry = json.loads(value) if value else {}
    if not isinstance(entry, dict):
        return {}
    at_ms = entry.get("at_ms")
    at = records.iso(datetime.fromtimestamp(at_ms / 1000, UTC)) if isinstance(at_ms, int) else None
    return {
        "command_id": json.loads(key) if key else None,
        "state": entry.get("state"),
        "status": entry.get("status"),
        "attempt": entry.get("attempt"),
        "at": entry.get("finished_at") or at,
    }
