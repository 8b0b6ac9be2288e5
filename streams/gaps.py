"""Command records that Faust skipped: found by their offsets, read back, and run.

After a restart that restores a table from its changelog (the command ledger), Faust
0.15 can hand an agent the records of a partition with one missing (seen: offsets 1, 3,
4, 5; offset 2 never reached the agent), and its commit then moves past the missing
one (it commits the first run of consecutive acknowledged offsets). The command would
be lost: at-least-once broken, silently.

streams/consumer.py closes the cause (the seek at the end of a recovery); the `GapGuard`
stays as the net that makes any such hole visible and harmless. It knows the next
offset it expects on each partition (at first, what the consumer group has committed:
where Faust starts); when a record arrives beyond it, the records in between are read
back from the topic with a group-less consumer and handed to the agent before the one
that revealed the gap. A record that comes again (a redelivery) is not a gap; the
command ledger skips what already ran. Each fill is logged with its offsets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message
from mode import Service

from streams.settings import Settings

__all__ = ["GapGuard"]

log = logging.getLogger(__name__)

#: The longest a read-back may take (the records were just there).
READ_TIMEOUT_S = 30.0


class GapGuard(Service):
    """One per process that runs commands (a worker's action pool, a runner)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        #: The next offset expected on each partition, and the consumer generation (a
        #: rebalance makes the committed offset the baseline again).
        self._next: dict[TP, tuple[int | None, int]] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def on_stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def missed(self, event: faust.EventT[bytes]) -> list[faust.EventT[bytes]]:
        """The records of this event's partition that should have come before it and
        did not (usually none)."""
        tp, offset = event.message.tp, event.message.offset
        generation = event.message.generation_id or 0
        expected, seen_in = self._next.get(tp, (None, generation))
        if seen_in != generation:
            expected = None
        # Updated before any await: the agent's actors take records in fetch order.
        self._next[tp] = (max(expected or 0, offset + 1), generation)
        if expected is None:
            try:
                async with asyncio.timeout(READ_TIMEOUT_S):
                    expected = await self._committed(tp)
            except (TimeoutError, KafkaError) as exc:  # a safety net: it must not stop the agent
                log.warning("committed offset of %s:%d not read (%r)", tp.topic, tp.partition, exc)
                return []
        if expected is None or offset <= expected:
            return []
        log.warning(
            "records %s:%d:%d-%d never reached the agent; reading them back",
            tp.topic,
            tp.partition,
            expected,
            offset - 1,
        )
        async with self._lock, asyncio.timeout(READ_TIMEOUT_S):
            found = await self._read(tp, expected, offset)
        return [_event(event, m) for m in found]

    async def _committed(self, tp: TP) -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka.bootstrap)
        await admin.start()
        try:
            part = TopicPartition(tp.topic, tp.partition)
            offsets = await admin.list_consumer_group_offsets(
                self.settings.app_id, partitions=[part]
            )
        finally:
            await admin.close()
        committed = offsets.get(part)
        return committed.offset if committed is not None and committed.offset >= 0 else None

    async def _read(self, tp: TP, start: int, end: int) -> list[Any]:
        consumer = await self._open()
        part = TopicPartition(tp.topic, tp.partition)
        consumer.assign([part])
        consumer.seek(part, start)
        found: list[Any] = []
        while True:
            batch = await consumer.getmany(part, timeout_ms=1000)
            for record in batch.get(part, []):
                if record.offset >= end:
                    return found
                found.append(record)
            if found and found[-1].offset >= end - 1:
                return found
            if not batch and await consumer.position(part) >= end:
                return found  # compacted or deleted in between: nothing more to read

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap,
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=self.settings.ingest.max_record_bytes,
            )
            await self._consumer.start()
        return self._consumer


def _event(current: faust.EventT[bytes], record: Any) -> faust.EventT[bytes]:
    """A Faust event for a record read back, so the agent handles it like any other. It
    is not tracked by Faust's acknowledgements (Faust never saw it)."""
    message = Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        timestamp=record.timestamp / 1000,
        timestamp_type=record.timestamp_type,
        headers=list(record.headers or ()),
        key=record.key,
        value=record.value,
        checksum=None,
        tp=current.message.tp,
    )
    return Event(current.app, record.key, record.value, message.headers, message)
