"""Every worker's copy of the silences: the whole of `<prefix>.silences`, followed live.

Each worker reads every partition of the compacted topic with its own group-less
consumer (no consumer group: every worker needs every silence, where a Faust table would
give each worker only its partitions' share; a GlobalTable would do, at the cost of a
changelog topic and Faust's recovery for a handful of small records). The router waits
for the first catch-up (everything on the topic when the worker started) before it
routes, so a silence written before a worker starts holds from its first event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from mode import Service

from streams.errors import EventError
from streams.settings import Settings
from streams.silences import Silence, decode_silence

__all__ = ["SilenceBook", "catch_up", "silences_topic_name"]

log = logging.getLogger(__name__)

#: Between looks for the topic's partitions when the topic is not there yet.
TOPIC_RETRY_S = 0.5


def silences_topic_name(settings: Settings) -> str:
    return settings.topics.name("silences")


async def catch_up(
    consumer: AIOKafkaConsumer,
    topic: str,
    apply: Callable[[ConsumerRecord[bytes, bytes]], None],
    deadline_s: float | None = None,
) -> None:
    """Subscribe a group-less consumer to every partition of `topic` (from the start)
    and apply each record up to the end offsets the partitions had once assigned."""
    consumer.subscribe([topic])
    ends: dict[TopicPartition, int] | None = None
    async with asyncio.timeout(deadline_s):
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                for message in messages:
                    apply(message)
            assigned = sorted(consumer.assignment())
            if not assigned:
                continue  # metadata not there yet
            if ends is None:
                ends = await consumer.end_offsets(assigned)
            positions = [await consumer.position(tp) for tp in assigned]
            if all(p >= ends.get(tp, 0) for p, tp in zip(positions, assigned, strict=True)):
                return


class SilenceBook(Service):
    """The silences this worker knows, by id; `active(now)` from the event loop."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.topic = silences_topic_name(settings)
        self._silences: dict[str, Silence] = {}
        self._consumer: AIOKafkaConsumer | None = None
        #: Set once everything on the topic at start has been read.
        self.loaded = asyncio.Event()

    def active(self, now: datetime) -> list[Silence]:
        return [s for s in self._silences.values() if s.active(now)]

    def known(self) -> list[Silence]:
        return list(self._silences.values())

    async def on_start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        self.add_future(self._follow(self._consumer))

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while self.topic not in await consumer.topics():
            await self.sleep(TOPIC_RETRY_S)  # the worker is creating it: look again
        await catch_up(consumer, self.topic, self._apply)
        log.info("%d silence(s) read from %s", len(self._silences), self.topic)
        self.loaded.set()
        while not self.should_stop:
            for messages in (await consumer.getmany(timeout_ms=1000)).values():
                for message in messages:
                    self._apply(message)

    def _apply(self, message: ConsumerRecord[bytes, bytes]) -> None:
        key = message.key.decode("utf-8", "replace") if message.key else None
        try:
            silence = decode_silence(message.value, key)
        except EventError as exc:
            log.warning("ignored record %s of %s: %s", message.offset, self.topic, exc.reason)
            return
        if silence is None:
            if key is not None:
                self._silences.pop(key, None)
            return
        self._silences[silence.id] = silence
        log.info("silence %s: %s until %s", silence.id, silence.matcher(), silence.end)
