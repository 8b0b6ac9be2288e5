"""What the UI changes on the topics: redrive a DLQ record, run a replay.

Redrive reads the DLQ record and then its source record (exact seeks), produces the source
record's key, bytes and headers again to its topic with `postee-redrive-id`, and records a
`redriven` record on the outcomes topic under the event's id. When the source record has
expired, the DLQ record's copy of the bytes is used (never for the replay topic: without
its headers a replayed event could no longer be told apart from a dry run).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import records, replay, timeline
from streams.config import PosteeConfig
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.topics import ACTION_TYPES
from streams.ui.index import Index

__all__ = ["RedriveError", "Redriver", "ReplayJob", "ReplayJobs"]

#: How long a replay started here waits for the routing decisions of its events.
COLLECT_DEADLINE_S = 60.0
KEEP_JOBS = 20


class RedriveError(Exception):
    """The DLQ record cannot be redriven; the message says why."""


class Redriver:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer
        name = settings.topics.name
        self.sources = {name(s) for s in ("events", "replay", "plugins")}
        self.sources |= {name(f"actions.{kind}") for kind in ACTION_TYPES}
        self.retry = name("retry")  #: a command whose last attempt ran from a retry record

    def _command_topic(self, value: bytes | None) -> str:
        try:
            command = records.decode_command(value)
        except Exception as exc:
            raise RedriveError(f"the retried command cannot be read: {exc}") from None
        if command.runs_on:
            return self.settings.topics.name(f"runner.{command.runs_on}")
        return self.settings.topics.name(f"actions.{command.type}")

    async def redrive(self, partition: int, offset: int) -> records.Redriven:
        dlq_topic = self.settings.topics.name("dlq")
        found = await self._read(dlq_topic, partition, offset)
        if found is None:
            raise RedriveError(f"no record at {dlq_topic}[{partition}]@{offset}")
        dlq = _json_object(found.value)
        topic = dlq.get("topic")
        if topic not in self.sources and topic != self.retry:
            raise RedriveError(f"a record from {topic!r} cannot be redriven")
        source = None
        if isinstance(dlq.get("partition"), int) and isinstance(dlq.get("offset"), int):
            source = await self._read(topic, dlq["partition"], dlq["offset"])
        event_id = dlq.get("event_id") or (
            found.key.decode("utf-8", "replace") if found.key else None
        )
        key, value, headers, from_source = self._what_to_send(dlq, source, topic, event_id)
        redrive_id = uuid.uuid4().hex
        ours = (records.HEADER_REDRIVE_ID, records.HEADER_REDRIVE_OF)
        headers = [(k, v) for k, v in headers if k not in ours] + [
            (records.HEADER_REDRIVE_ID, redrive_id.encode()),
            (records.HEADER_REDRIVE_OF, f"{dlq_topic}:{partition}:{offset}".encode()),
        ]
        if topic == self.retry:  # back to its command topic, as a fresh record
            topic = self._command_topic(value)
            headers = [(k, v) for k, v in headers if not k.startswith("postee-retry")]
        sent = await self.producer.send_and_wait(topic, value, key=key, headers=headers)
        # The redriven record carries the time of the record it put back, so the timeline
        # tells of the redrive before what the redriven record caused.
        redriven = records.Redriven(
            redrive_id=redrive_id,
            event_id=event_id,
            at=records.utc_now(),
            dlq={"topic": dlq_topic, "partition": partition, "offset": offset},
            stage=str(dlq.get("stage", "")),
            reason=str(dlq.get("reason", "")),
            to={"topic": topic, "partition": sent.partition, "offset": sent.offset},
            from_source=from_source,
        )
        await self.producer.send_and_wait(
            self.settings.topics.name("outcomes"),
            redriven.to_json(),
            key=event_id.encode() if event_id else None,
            timestamp_ms=sent.timestamp if sent.timestamp > 0 else None,
        )
        return redriven

    async def _read(self, topic: str, partition: int, offset: int) -> Any:
        """One record by its place, with a consumer of its own (re-assigning one consumer
        from partition to partition stalls aiokafka's fetcher)."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            return await timeline.read_at(consumer, topic, partition, offset)
        finally:
            await consumer.stop()

    def _what_to_send(
        self, dlq: dict[str, Any], source: Any, topic: str, event_id: str | None
    ) -> tuple[bytes | None, bytes, list[tuple[str, bytes]], bool]:
        original = _original(dlq)
        if source is not None and source.value is not None and original in (None, source.value):
            return source.key, source.value, list(source.headers or ()), True
        if topic == self.settings.topics.name("replay"):
            raise RedriveError("the replayed record has expired: its replay mode is lost")
        if original is None:
            raise RedriveError("the source record has expired and the DLQ kept no bytes")
        headers = []
        if event_id and topic == self.settings.topics.name("events"):
            headers = [(records.HEADER_EVENT_ID, event_id.encode())]
        return (event_id.encode() if event_id else None), original, headers, False


def _json_object(raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise RedriveError("the DLQ record is not a JSON object")
    return value


def _original(dlq: dict[str, Any]) -> bytes | None:
    text = dlq.get("original")
    if not isinstance(text, str):
        return None
    return base64.b64decode(text) if dlq.get("encoding") == "base64" else text.encode()


@dataclass
class ReplayJob:
    id: str
    plan: replay.ReplayPlan
    state: str = "reading"  #: reading, collecting, done, failed
    read: int = 0
    total: int | None = None
    summary: replay.ReplaySummary | None = None
    complete: bool | None = None  #: every replayed event's decision arrived in time
    error: str | None = None
    started_at: str = field(default_factory=records.utc_now)

    def as_dict(self, index: Index) -> dict[str, Any]:
        s = self.summary
        return {
            "id": self.id,
            "state": self.state,
            "started_at": self.started_at,
            "from": records.iso(self.plan.start),
            "to": records.iso(self.plan.end),
            "route": self.plan.route,
            "mode": "execute" if self.plan.execute else "dry run",
            "read": self.read,
            "total": self.total,
            "replay_id": s.replay_id if s else None,
            "replayed": s.replayed if s else 0,
            "routed": s.routed if s else 0,
            "commands": s.commands if s else 0,
            "routes": dict(s.routes) if s else {},
            "outcomes": dict(index.replay_statuses.get(s.replay_id, {})) if s else {},
            "complete": self.complete,
            "error": self.error,
        }


class ReplayJobs:
    def __init__(self, settings: Settings, config: PosteeConfig) -> None:
        self.settings = settings
        self.config = config
        self.jobs: OrderedDict[str, ReplayJob] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, start: datetime, end: datetime, route: str | None, execute: bool) -> ReplayJob:
        """Raises ValueError for a route the config does not have."""
        selector = None
        if route:
            chosen = self.config.route(route)
            if chosen is None:
                raise ValueError(f"no route named '{route}' in {self.config.file}")
            selector = RouteMatcher.compile([chosen.as_rule()])
        plan = replay.ReplayPlan(
            start=start,
            end=end,
            route=route or None,
            selector=selector,
            required=frozenset([route]) if route else frozenset(),
            execute=execute,
        )
        job = ReplayJob(uuid.uuid4().hex[:12], plan)
        self.jobs[job.id] = job
        while len(self.jobs) > KEEP_JOBS:
            self.jobs.popitem(last=False)
        task = asyncio.create_task(self._run(job), name=f"postee-ui-replay-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: ReplayJob) -> None:
        began = datetime.now(UTC)

        def progress(done: int, total: int) -> None:
            job.read, job.total = done, total

        try:
            job.summary = await replay.replay(self.settings, job.plan, progress)
            job.state = "collecting"
            job.complete = not job.summary.replayed or await replay.collect_results(
                self.settings, job.summary, began, COLLECT_DEADLINE_S
            )
            job.state = "done"
        except Exception as exc:  # shown on the page; the UI goes on
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
