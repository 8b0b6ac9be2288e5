"""Reading one event back by its record's position.

A command whose event would make it too large for one record carries the event by
reference (`EventRef`: topic, partition, offset): the event is stored once, on the events
topic, never copied into every command. The action agent that runs such a command reads
it back here, just before it runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from streams import records
from streams.errors import EventError
from streams.records import EventRef
from streams.settings import Settings

__all__ = ["EventFetchError", "EventStore"]

FETCH_TIMEOUT_S = 10.0


class EventFetchError(Exception):
    """The referenced event could not be read back (gone past retention, unreachable)."""


class EventStore(Service):
    """One group-less consumer, shared by the worker's action agents under a lock: reads
    by reference are rare (only for events near the record limit)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def fetch(self, ref: EventRef) -> dict[str, Any]:
        try:
            async with self._lock, asyncio.timeout(FETCH_TIMEOUT_S):
                raw = await self._read(ref)
        except TimeoutError:
            raise EventFetchError(f"no answer within {FETCH_TIMEOUT_S:g}s") from None
        except KafkaError as exc:
            raise EventFetchError(f"the broker could not serve it: {exc!r}") from None
        try:
            return records.parse_json_object(raw)
        except EventError as exc:
            raise EventFetchError(exc.reason) from None

    async def _read(self, ref: EventRef) -> bytes:
        consumer = await self._open()
        tp = TopicPartition(ref.topic, ref.partition)
        if tp not in consumer.assignment():
            # Assigning a topic's partitions all at once: changing the assignment one
            # partition at a time stalls aiokafka's fetcher (see timeline.py).
            await consumer.topics()  # refresh metadata
            partitions = consumer.partitions_for_topic(ref.topic) or {ref.partition}
            wanted = {TopicPartition(ref.topic, p) for p in partitions} | {tp}
            consumer.assign(list(consumer.assignment() | wanted))
        consumer.seek(tp, ref.offset)
        while True:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            for message in batch.get(tp, []):
                if message.offset != ref.offset or message.value is None:
                    raise EventFetchError(
                        f"record {ref.topic}:{ref.partition}:{ref.offset} is no longer "
                        "on the topic (past its retention?)"
                    )
                value: bytes = message.value
                return value

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=self.settings.ingest.max_record_bytes,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer
