"""Lanes: the slots of each action, so that one slow or failing target holds up nothing else.

Every action (by name, not by type) has a lane: at most `concurrency` of its commands run
at a time (the action's `concurrency` key, else its type's default), and at most
`max_waiting` more wait for a slot. A command is a task of its own: the agent that read
it hands it to its action's lane and goes on reading, so commands of other actions on
the same topic never queue behind it. When a lane is full, the executor parks the
command on the retry topic instead (see streams/retries.py): the agent never waits for a
lane, and memory stays bounded.

Tasks are created in the context of whoever submits them (the agent iterating its
stream), so Faust's current event, which table writes need, travels with them.

`clear()` drops every command that is still waiting for a slot: Faust calls it through
`app.flow_control` when a rebalance or a shutdown begins, before it waits for in-flight
records. Dropped commands were never acknowledged, so they come back from the broker;
the running ones finish (bounded by their timeouts and the shutdown grace period).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable

__all__ = ["Lane", "Lanes"]

Job = Callable[[], Awaitable[None]]


class Lane:
    """The slots of one action."""

    def __init__(self, name: str, concurrency: int, max_waiting: int) -> None:
        self.name = name
        self.concurrency = max(1, concurrency)
        self.max_waiting = max_waiting
        self._slots = asyncio.Semaphore(self.concurrency)
        #: Tasks not yet holding a slot (dropped by `clear`), and those running.
        self._waiting: set[asyncio.Task[None]] = set()
        self._running: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return len(self._running)

    def full(self) -> bool:
        """No room for another waiting command (retries may still enter: `force`)."""
        return len(self._waiting) >= self.max_waiting

    def start(
        self,
        job: Job,
        *,
        context: contextvars.Context | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> asyncio.Task[None]:
        """Run `job` in a slot of this lane, as a task of its own; `on_done` afterwards,
        also when the job was dropped before it ran."""
        task = asyncio.get_running_loop().create_task(self._run(job, on_done), context=context)
        self._waiting.add(task)
        task.add_done_callback(self._forget)
        return task

    async def _run(self, job: Job, on_done: Callable[[], None] | None) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            async with self._slots:
                self._waiting.discard(task)
                self._running.add(task)
                await job()
        finally:
            if on_done is not None:
                on_done()

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._waiting.discard(task)
        self._running.discard(task)

    def clear(self) -> int:
        """Drop the commands waiting for a slot; how many."""
        dropped = list(self._waiting)
        for task in dropped:
            task.cancel()
        self._waiting.clear()
        return len(dropped)

    async def close(self) -> None:
        """Cancel everything, running commands too (the worker is gone)."""
        tasks = [*self._waiting, *self._running]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Lanes:
    """The lanes of one worker (or runner), made on first use."""

    def __init__(self, concurrency_of: Callable[[str], int], max_waiting: int) -> None:
        self._concurrency_of = concurrency_of
        self.max_waiting = max_waiting
        self._lanes: dict[str, Lane] = {}
        #: Called by `clear()`, with the number of dropped commands (metrics, logs).
        self.on_clear: list[Callable[[], None]] = []

    def lane(self, action: str) -> Lane:
        lane = self._lanes.get(action)
        if lane is None:
            lane = self._lanes[action] = Lane(
                action, self._concurrency_of(action), self.max_waiting
            )
        return lane

    def clear(self) -> None:
        """Drop every waiting command (Faust's flow control calls this: see the module)."""
        for lane in self._lanes.values():
            lane.clear()
        for callback in self.on_clear:
            callback()

    async def close(self) -> None:
        await asyncio.gather(*(lane.close() for lane in self._lanes.values()))
