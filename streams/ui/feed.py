"""Tails the topics into the index, and tells the live pages what changed.

One plain aiokafka consumer (no group: the UI never moves anyone's offsets) is assigned
every partition of the events, replay, outcomes, DLQ and command topics, starting at the
first record of the index window (seek by timestamp). Topics or partitions that appear
later (the UI started before the worker) are picked up from their beginning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from streams.settings import Settings
from streams.topics import ACTION_TYPES
from streams.ui.index import Index

__all__ = ["Feed"]

log = logging.getLogger(__name__)

#: How often to look for topics and partitions created after the start.
METADATA_REFRESH_S = 2.0
#: Changes waiting for a slow live page; past that it is told to reload.
SUBSCRIBER_BACKLOG = 64


class Feed:
    def __init__(self, settings: Settings, index: Index) -> None:
        self.settings = settings
        self.index = index
        name = settings.topics.name
        self.kinds = {
            name("events"): "events",
            name("replay"): "replay",
            name("outcomes"): "outcomes",
            name("dlq"): "dlq",
            **{name(f"actions.{kind}"): "command" for kind in ACTION_TYPES},
        }
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        #: Set once the index holds everything the topics had when the UI started.
        self.caught_up = asyncio.Event()
        self._subscribers: set[asyncio.Queue[set[str] | None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._assigned: set[TopicPartition] = set()
        self._targets: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        await self.consumer.start()
        await self._assign(initial=True)
        self._task = asyncio.create_task(self._run(), name="postee-ui-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.consumer.stop()

    def subscribe(self) -> asyncio.Queue[set[str] | None]:
        queue: asyncio.Queue[set[str] | None] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[set[str] | None]) -> None:
        self._subscribers.discard(queue)

    async def _assign(self, initial: bool = False) -> None:
        await self.consumer._client.force_metadata_update()
        found = {
            TopicPartition(topic, p)
            for topic in self.kinds
            for p in self.consumer.partitions_for_topic(topic) or ()
        }
        new = found - self._assigned
        if not new:
            if initial:
                self.caught_up.set()  # nothing to read yet
            return
        since_ms = int(time.time() * 1000) - self.index.window_ms
        starts = await self.consumer.offsets_for_times({tp: since_ms for tp in new})
        ends = await self.consumer.end_offsets(list(new))
        self._assigned |= new
        self.consumer.assign(list(self._assigned))
        for tp in new:
            # A partition that appears later is new: read it whole.
            first = starts[tp].offset if starts[tp] is not None else ends[tp]
            self.consumer.seek(tp, first if initial else 0)
            if initial and ends[tp] > first:
                self._targets[tp] = ends[tp]
        if initial and not self._targets:
            self.caught_up.set()

    async def _run(self) -> None:
        refreshed = time.monotonic()
        while True:
            try:
                if not self._assigned:  # no topic yet (getmany would wait for one forever)
                    await asyncio.sleep(METADATA_REFRESH_S)  # a poll interval, not pacing
                    await self._assign()
                    continue
                batch = await self.consumer.getmany(timeout_ms=500, max_records=5000)
                changed = self._fold(batch)
                if changed:
                    self._publish(changed)
                if time.monotonic() - refreshed > METADATA_REFRESH_S:
                    refreshed = time.monotonic()
                    await self._assign()
            except asyncio.CancelledError:
                raise
            except Exception:  # the broker went away for a while: keep the pages up
                log.exception("UI feed: reading the topics failed; trying again")
                await asyncio.sleep(1.0)  # back off before the next attempt, not pacing

    def _fold(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> set[str]:
        changed: set[str] = set()
        apply = self.index.apply
        for tp, messages in batch.items():
            kind = self.kinds[tp.topic]
            for m in messages:
                place = (tp.topic, tp.partition, m.offset)
                event_id = apply(kind, m.key, m.value, list(m.headers or ()), m.timestamp, place)
                if event_id is not None:
                    changed.add(event_id)
            if messages and tp in self._targets and messages[-1].offset + 1 >= self._targets[tp]:
                del self._targets[tp]
                if not self._targets:
                    self.caught_up.set()
        return changed

    def _publish(self, changed: set[str]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(changed)
            except asyncio.QueueFull:  # too slow: tell it to reload, forget it
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)
