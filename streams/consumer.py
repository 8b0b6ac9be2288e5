"""Faust's Kafka consumer, with two at-least-once holes closed.

Both were seen losing commands on the real broker (tests/e2e/test_flow_control.py, the
kill -9 while retries are scheduled; tests/e2e/test_runners.py before it):

1. **Records fetched before recovery ends, then dropped.** A worker that restores a table
   (the command ledger) may fetch records of its stream partitions while it reads the
   changelogs. When recovery ends, Faust clears every in-memory queue (mode's
   `FlowControlEvent.resume()` clears the queues it manages, our lanes and retry timers
   too) and seeks the stream partitions back to their committed offsets, so the cleared
   records are fetched again. But aiokafka's `seek_to_committed` seeks only partitions
   whose committed offset is above 0: on a partition with no commit yet (a new retry
   topic, a runner's first records) the position stays after the cleared records, and
   they never reach an agent. And a record fetched after the seek but before the clear
   is lost on any partition. Here the flow stops (no record reaches an agent) from the
   seek until Faust resumes it after the clear, and partitions without a commit are
   sought to their first offset, where `auto_offset_reset=earliest` starts them anyway.

2. **A commit past a record still in flight** (faust-streaming issue #606). Faust commits
   the first run of consecutive acknowledged offsets, and lets that run begin one past
   the committed offset (room for a transaction marker there), or anywhere when nothing
   is committed yet. Our agents acknowledge out of order (a lane per action, retries
   held until they are due), so with record 5 held for its retry and records 6 and 7
   done, Faust commits 8, and a kill -9 then loses record 5. Here no commit passes a
   record that was handed to an agent and is not acknowledged.

And one latency fix: **the fetch wait**. aiokafka keeps one fetch request in flight per
broker, for the partitions that have nothing buffered; the broker holds it until one of
them gets data or `fetch_max_wait_ms` passes, which Faust hard-codes to 1,500 ms. A
partition drained meanwhile (the router done with its events) cannot be fetched again
until that request returns: a burst stalled up to 1.5 s at each hop, with the worker
idle. Here the wait is `POSTEE_FETCH_MAX_WAIT_MS` (default 100). Measured, 1,000 events
POSTed at once (64 in flight) to an http action: the last delivered 4.5 s after the first
POST with 1,500 ms, 1.5 s with 100 (1.9 s with 500, 1.5 s with 50).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

import aiokafka
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

if TYPE_CHECKING:
    from streams.app import PosteeApp

__all__ = ["PosteeConsumer"]


class PosteeConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka consumer with our fetch wait."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read when the consumer starts (it builds its Fetcher then); Faust passes no
        # other way to set it.
        app = cast("PosteeApp", self.app)
        consumer._fetch_max_wait_ms = app.settings.kafka.fetch_max_wait_ms
        return consumer


class PosteeConsumer(aiokafka_driver.Consumer):
    """The consumer of every worker and runner (see the module for what it changes)."""

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return PosteeConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        # Faust resumes the stream partitions before this and clears its queues (and our
        # lanes and retry timers) only after it: a record handed to an agent in between
        # would be cleared with the position already past it. With the flow stopped, the
        # fetcher drops such records and seeks back (calling this again); Faust resumes
        # the flow after the clear. (Called with the flow stopped already, this changes
        # nothing: no await comes before it.)
        self.stop_flow()
        committed = await self.seek_to_committed()  # aiokafka seeks those above 0
        self._read_offset.update(
            {tp: o if o is not None and o >= 0 else None for tp, o in committed.items()}
        )
        self._committed_offset.update(
            {tp: o or None for tp, o in committed.items() if o is not None}
        )
        unsought = [
            tp
            for tp, o in committed.items()
            if not o and self.app.topics.acks_enabled_for(tp.topic)
        ]
        if unsought:
            first = await self.earliest_offsets(*unsought)
            await self.seek_wait({tp: first[tp] for tp in unsought if tp in first})

    #: Per commit round, the lowest offset in flight of each partition (see below).
    _in_flight: dict[TP, int] | None = None

    def _filter_committable_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        # One pass over the records in flight per commit round, not one per partition.
        self._in_flight = self._lowest_in_flight()
        try:
            return super()._filter_committable_offsets(tps)
        finally:
            self._in_flight = None

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if acked:
            in_flight = (self._in_flight or self._lowest_in_flight()).get(tp)
            if in_flight is not None and min(acked) > in_flight:
                return None  # what is done lies beyond a record still running
        # Else Faust's run of consecutive offsets from min(acked) stops before the record
        # in flight (it is not acknowledged), so it commits nothing past it.
        return super()._new_offset(tp)

    def _lowest_in_flight(self) -> dict[TP, int]:
        """The lowest offset of each partition handed to an agent and not acknowledged."""
        lowest: dict[TP, int] = {}
        for message in list(self._unacked_messages):
            if not message.acked and message.offset < lowest.get(message.tp, message.offset + 1):
                lowest[message.tp] = message.offset
        return lowest
