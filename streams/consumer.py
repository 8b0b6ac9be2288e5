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
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP

__all__ = ["PosteeConsumer"]


class PosteeConsumer(aiokafka_driver.Consumer):
    """The consumer of every worker and runner (see the module for what it changes)."""

    async def perform_seek(self) -> None:
        # Faust resumes the stream partitions before this and clears its queues (and our
        # lanes and retry timers) only after it: a record handed to an agent in between
        # would be cleared with the position already past it. Stopping the flow makes the
        # fetcher drop such records and seek back; Faust resumes the flow after the clear.
        self.stop_flow()
        await super().perform_seek()
        acking = [tp for tp in self.assignment() if self.app.topics.acks_enabled_for(tp.topic)]
        if not acking:
            return
        first = await self.earliest_offsets(*acking)
        unsought = {}
        for tp in acking:
            start = first.get(tp)
            if start is None:
                continue
            committed = self._committed_offset[tp]  # None also when Kafka says 0
            if committed is None:
                unsought[tp] = start
            if committed is None or committed < start:  # or retention deleted past it
                self._committed_offset[tp] = start
        if unsought:
            await self.seek_wait(unsought)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if acked:
            in_flight = self._lowest_in_flight(tp)
            if in_flight is not None and min(acked) > in_flight:
                return None  # what is done lies beyond a record still running
        # Else Faust's run of consecutive offsets from min(acked) stops before the record
        # in flight (it is not acknowledged), so it commits nothing past it.
        return super()._new_offset(tp)

    def _lowest_in_flight(self, tp: TP) -> int | None:
        """The lowest offset of `tp` handed to an agent and not acknowledged."""
        offsets = [m.offset for m in list(self._unacked_messages) if m.tp == tp and not m.acked]
        return min(offsets, default=None)
