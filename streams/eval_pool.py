"""A supervised pool of evaluator processes: the Rego engine outside the event loop.

`EvalPool` (a mode Service, started with the app) starts `POSTEE_EVAL_WORKERS` processes
(`python -m streams.evaluator FD`: a fresh interpreter that imports only the engine,
never the worker's main module), each compiling the `EngineSpec` it is sent first. Events go to
them over a socket pair, framed as `!I` length + pickle; each process answers its jobs
in order, at most `DEPTH` at a time, so a job's clock starts when the one before it is
answered. A process that dies (signal, OOM kill, EOF) or whose current job overruns
`POSTEE_EVAL_TIMEOUT_MS` is killed (SIGKILL) and replaced; its current job is retried
once on another process, then answered with an `Evaluation` error that names the
crash or the timeout; its queued jobs go back to the front of the queue. Nothing here
blocks the event loop: writes are buffered, reads are asyncio streams, joins run in a
asyncio subprocess handles. Callers get one future per job; the router awaits them in arrival order.

The process side is `evaluator.serve`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mode import Service

import streams
from streams.evaluator import HEADER, READY, EngineSpec, Evaluation, SilenceRules
from streams.settings import EngineSettings

__all__ = ["DEPTH", "EvalPool"]

log = logging.getLogger(__name__)

#: Where the `streams` package lives, for the evaluator processes' import path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(streams.__file__)))
_PYTHONPATH = os.environ.get("PYTHONPATH", "")

#: Jobs handed to one process before it answered the first: hides the round trip (with
#: 2, the router waited on it: 268 events/s at 1 route; with 32, 633 in the same run
#: conditions). A crash or timeout retries them all; only the first counts it.
DEPTH = 32
#: How long a new evaluator may take to compile before it counts as failed.
START_TIMEOUT_S = 120.0


# --- the pool, in the worker ----------------------------------------------------------------


@dataclass(eq=False)
class _Job:
    id: int
    kind: str  #: "event" or "batch"
    frame: bytes
    future: asyncio.Future[Any]
    failures: list[str] = field(default_factory=list)


@dataclass(eq=False)
class _Process:
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    ready: bool = False
    retired: bool = False
    pending: collections.deque[_Job] = field(default_factory=collections.deque)
    timer: asyncio.TimerHandle | None = None
    kill_reason: str | None = None


class EvalPool(Service):
    """Evaluator processes for one worker; `evaluate` from the event loop's thread."""

    def __init__(self, spec: EngineSpec, settings: EngineSettings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.size = settings.eval_workers
        self.timeout_s = settings.eval_timeout_ms / 1000
        self._timeout_ms = settings.eval_timeout_ms
        self._processes: list[_Process] = []
        self._queue: collections.deque[_Job] = collections.deque()
        self._ids = itertools.count(1)
        self._stopping = False
        self._started_all: asyncio.Future[None] | None = None
        self.replaced = 0  #: processes replaced after a crash or a timeout
        #: Told of every replacement: "timeout" (we killed it) or "crash" (it died).
        self.on_replaced: Callable[[str], None] = lambda cause: None

    # -- public ---------------------------------------------------------------------------

    async def evaluate(
        self, raw: bytes, only: str | None = None, silences: SilenceRules = ()
    ) -> Evaluation:
        """Routes, templates and the rule silences given (see evaluator.py), in one job."""
        result: Evaluation = await self._submit("event", raw, (only, silences))
        return result

    async def render_batch(
        self, template: str, messages: Sequence[Mapping[str, Any]]
    ) -> tuple[str, Any]:
        """("ok", rendered dict or None) or ("error", reason)."""
        result: tuple[str, Any] = await self._submit("batch", template, list(messages))
        return result

    async def drain(self, timeout_s: float) -> None:
        """Wait until every job given so far is answered (at most `timeout_s`): before a
        pool replaced by a reload is stopped."""
        jobs = [*self._queue, *(j for p in self._processes for j in p.pending)]
        if jobs:
            await asyncio.wait([j.future for j in jobs], timeout=timeout_s)

    def busy_pids(self) -> list[int]:
        """Processes working on a job now (for tests and diagnostics)."""
        return [p.process.pid for p in self._processes if p.pending]

    # -- service --------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._started_all = asyncio.get_running_loop().create_future()
        for _ in range(self.size):
            await self._spawn()
        await asyncio.wait_for(asyncio.shield(self._started_all), START_TIMEOUT_S)
        log.info("%d evaluator process(es) ready", self.size)

    async def on_stop(self) -> None:
        self._stopping = True
        processes, self._processes = self._processes, []
        for proc in processes:
            proc.retired = True
            proc.writer.close()  # EOF: the process returns from its loop
        for proc in processes:
            try:
                await asyncio.wait_for(proc.process.wait(), 5)
            except TimeoutError:
                _kill(proc.process)
                await proc.process.wait()
        for job in [*self._queue, *(j for p in processes for j in p.pending)]:
            job.future.cancel()
        self._queue.clear()

    # -- internals --------------------------------------------------------------------------

    async def _submit(self, kind: str, first: object, second: object) -> Any:
        job_id = next(self._ids)
        body = pickle.dumps((job_id, kind, first, second), pickle.HIGHEST_PROTOCOL)
        frame = HEADER.pack(len(body)) + body
        job = _Job(job_id, kind, frame, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._dispatch()
        return await job.future

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        fd = theirs.fileno()
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, _PYTHONPATH]))}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "streams.evaluator",
                str(fd),
                pass_fds=[fd],
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        spec = pickle.dumps(self.spec, pickle.HIGHEST_PROTOCOL)
        writer.write(HEADER.pack(len(spec)) + spec)
        proc = _Process(process, writer)
        self._processes.append(proc)
        self.add_future(self._read(proc, reader))

    async def _read(self, proc: _Process, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                body = await reader.readexactly(HEADER.unpack(header)[0])
                job_id, result = pickle.loads(body)  # noqa: S301 - our own child process
                if job_id == READY:
                    proc.ready = True
                    self._mark_started()
                else:
                    self._answered(proc, job_id, result)
                self._dispatch()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass  # the process is gone: see _lost
        await self._lost(proc)

    def _mark_started(self) -> None:
        ready = sum(p.ready for p in self._processes)
        if self._started_all is not None and not self._started_all.done() and ready >= self.size:
            self._started_all.set_result(None)

    def _answered(self, proc: _Process, job_id: int, result: object) -> None:
        job = proc.pending.popleft()
        assert job.id == job_id, "answers come in the order the jobs were sent"
        self._disarm(proc)
        if proc.pending:
            self._arm(proc)
        if not job.future.done():
            job.future.set_result(result)

    def _dispatch(self) -> None:
        while self._queue:
            free = [p for p in self._processes if p.ready and not p.retired]
            free = [p for p in free if len(p.pending) < DEPTH]
            if not free:
                return
            proc = min(free, key=lambda p: len(p.pending))
            job = self._queue.popleft()
            proc.pending.append(job)
            proc.writer.write(job.frame)
            if len(proc.pending) == 1:
                self._arm(proc)

    def _arm(self, proc: _Process) -> None:
        loop = asyncio.get_running_loop()
        proc.timer = loop.call_later(self.timeout_s, self._timed_out, proc)

    def _disarm(self, proc: _Process) -> None:
        if proc.timer is not None:
            proc.timer.cancel()
            proc.timer = None

    def _timed_out(self, proc: _Process) -> None:
        proc.timer = None
        proc.kill_reason = (
            f"evaluation took longer than {self._timeout_ms} ms (POSTEE_EVAL_TIMEOUT_MS)"
        )
        _kill(proc.process)  # the reader sees EOF and calls _lost

    async def _lost(self, proc: _Process) -> None:
        if proc.retired:
            return
        proc.retired = True
        self._disarm(proc)
        proc.writer.close()
        if proc in self._processes:
            self._processes.remove(proc)
        if proc.process.returncode is None and proc.kill_reason is None:
            # EOF without a kill of ours: it is dying; give it a moment to say how.
            try:
                await asyncio.wait_for(proc.process.wait(), 5)
            except TimeoutError:
                _kill(proc.process)
        _kill(proc.process)
        await proc.process.wait()
        reason = proc.kill_reason or _death(proc.process.returncode)
        if not proc.ready:  # a broken setup, not an event: do not respawn in a loop
            log.error("an evaluator process failed to start: %s", reason)
            if self._started_all is not None and not self._started_all.done():
                self._started_all.set_exception(
                    RuntimeError(f"evaluator failed to start: {reason}")
                )
            if not self._processes:
                for job in self._queue:
                    job.future.set_result(_failure(job, f"no evaluator could start: {reason}"))
                self._queue.clear()
            return
        jobs = list(proc.pending)
        proc.pending.clear()
        if jobs:
            head = jobs[0]
            head.failures.append(reason)
            log.warning("evaluator %s lost on job %d: %s", proc.process.pid, head.id, reason)
            if len(head.failures) >= 2 and not head.future.done():
                jobs = jobs[1:]
                error = f"evaluator failed twice on this event: {'; then '.join(head.failures)}"
                head.future.set_result(_failure(head, error))
            self._queue.extendleft(reversed(jobs))
        if self._stopping:
            return
        self.replaced += 1
        self.on_replaced("timeout" if proc.kill_reason else "crash")
        await self._spawn()
        self._dispatch()


def _failure(job: _Job, error: str) -> object:
    return Evaluation(error=error) if job.kind == "event" else ("error", error)


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"evaluator process killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"evaluator process killed by signal {-exitcode}"
    return f"evaluator process exited with status {exitcode}"
