"""Lanes and retry records, without Faust: per-action slots, isolation, dropping what has
not started, retry headers both ways, and the bound of the retry timers."""

from __future__ import annotations

import asyncio

import pytest

from streams import records, retries
from streams.lanes import Lanes

DEADLINE_S = 5.0


async def test_a_blocked_action_holds_up_no_other_and_keeps_its_concurrency():
    lanes = Lanes(lambda name: 2, max_waiting=3)
    release = asyncio.Event()
    running = {"slow": 0, "peak": 0}
    done: list[int] = []

    async def slow() -> None:
        running["slow"] += 1
        running["peak"] = max(running["peak"], running["slow"])
        await release.wait()
        running["slow"] -= 1

    slow_lane = lanes.lane("slow")
    for _ in range(5):
        slow_lane.start(slow)
    await asyncio.wait_for(_until(lambda: slow_lane.running == 2), DEADLINE_S)
    assert slow_lane.waiting == 3 and slow_lane.full()

    fast = [lanes.lane("fast").start(lambda i=i: _append(done, i)) for i in range(10)]
    await asyncio.wait_for(asyncio.gather(*fast), DEADLINE_S)
    assert done == list(range(10)) and running["slow"] == 2
    release.set()
    await asyncio.wait_for(_until(lambda: slow_lane.running == 0), DEADLINE_S)
    assert running["peak"] == 2


async def test_clear_drops_waiting_commands_and_lets_running_ones_finish():
    lanes = Lanes(lambda name: 1, max_waiting=10)
    release, finished, released = asyncio.Event(), [], []
    lane = lanes.lane("a")

    async def job(n: int) -> None:
        await release.wait()
        finished.append(n)

    tasks = [lane.start(lambda n=n: job(n), on_done=lambda: released.append(1)) for n in range(4)]
    await asyncio.wait_for(_until(lambda: lane.running == 1), DEADLINE_S)
    lanes.clear()
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), DEADLINE_S)
    assert finished == [0]  # the running one finished; the three waiting ones never ran
    assert len(released) == 4 and lane.waiting == 0


@pytest.mark.parametrize("as_mapping", [False, True])
def test_retry_headers_round_trip(as_mapping):
    retry = retries.Retry(
        due_ms=1_700_000_000_123,
        first_attempt=3,
        errors=({"attempt": 3, "error": "x" * 5000},),
        parked=2,
        redrive_id="r" * 32,
        repeat=True,
    )
    headers = retry.headers()
    back = retries.Retry.from_headers(dict(headers) if as_mapping else headers)
    assert back is not None
    assert (back.due_ms, back.first_attempt, back.parked) == (1_700_000_000_123, 3, 2)
    assert back.redrive_id == "r" * 32 and back.repeat is True
    assert back.errors == ({"attempt": 3, "error": "x" * retries.MAX_ERROR_CHARS},)
    assert records.redrive_id(headers) == "r" * 32  # the executor's own reading of it


def test_records_without_or_with_broken_retry_headers():
    assert retries.Retry.from_headers([(records.HEADER_EVENT_ID, b"e")]) is None
    with pytest.raises(ValueError, match="malformed retry headers"):
        retries.Retry.from_headers([(retries.HEADER_RETRY_AT, b"soon")])
    with pytest.raises(ValueError, match="malformed retry headers"):
        retries.Retry.from_headers([(retries.HEADER_RETRY_AT, b"1"), (retries.HEADER_ERRORS, b"{")])


async def test_scheduler_fires_in_due_order_and_bounds_what_it_holds():
    scheduler = retries.Scheduler(capacity=2)
    fired: list[str] = []
    now = retries.now_ms()
    scheduler.at(now + 200, lambda: fired.append("later"))
    scheduler.at(now - 1000, lambda: fired.append("overdue"))
    room = asyncio.ensure_future(scheduler.room())
    await asyncio.wait_for(_until(lambda: len(fired) == 2), DEADLINE_S)
    assert fired == ["overdue", "later"]
    assert not room.done()  # both still held until released
    scheduler.release()
    await asyncio.wait_for(room, DEADLINE_S)
    scheduler.at(now + 60_000, lambda: fired.append("never"))
    scheduler.clear()  # a rebalance: the timer is gone, and so is its hold
    assert scheduler.held == 1


async def _append(done: list[int], n: int) -> None:
    done.append(n)


async def _until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.005)  # poll, bounded by the caller's wait_for
