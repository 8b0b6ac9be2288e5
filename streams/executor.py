"""Action agents: one per action type, consuming `<prefix>.actions.<type>`, and one on the
retry topic.

Each agent only reads and dispatches: every command runs as a task in its action's lane
(streams/lanes.py: `concurrency` slots per action, its type's default otherwise), so a
slow or failing target holds up no other action. A command whose lane is full is parked
on the retry topic, due a little later, instead of waiting in memory.

For each command: run one attempt (with an outer time bound) and publish its outcome. A
temporary failure with attempts left (exponential backoff with jitter, or the target's
`Retry-After`) publishes a retry record on the retry topic with the next attempt
(streams/retries.py), instead of sleeping; the retry agent runs it when it is due. A
command that exhausted its attempts goes to the DLQ with every attempt's error, and, for
a serialized route, the next action's command is issued after this one's terminal outcome.

Acknowledgement order: a record is acknowledged (and so committed) only after what it
produced is on the broker: its outcome, and its retry record or DLQ record or next
command. The ledger (streams/ledger.py) records `started`, `retrying` (with the next
attempt) and `finished`, so a redelivered record is skipped (finished), dropped
(superseded by a scheduled retry) or run again with a higher attempt (started, never
finished).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

import faust
from mode import Service

import actions
from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    ActionTemporaryError,
)
from actions.docker import DockerAction
from actions.exec import ExecAction
from actions.http import HttpAction
from actions.notify.transport import HttpNotifier
from streams import config, plugins, records, retries, secrets, tracing, trust
from streams.app import PosteeApp
from streams.errors import EventError
from streams.event_store import EventFetchError, EventStore
from streams.gaps import GapGuard
from streams.lanes import Lane, Lanes
from streams.ledger import CommandLedger
from streams.outcomes import Message, ack_after, manual_acks
from streams.records import Command, Outcome
from streams.settings import ActionLimits, Settings

__all__ = [
    "ActionPool",
    "AttemptRun",
    "Flow",
    "execute_one",
    "install",
    "run_attempt",
    "subscribe",
    "subscribe_retries",
]

log = logging.getLogger(__name__)

#: Time an action gets beyond its own timeout before the executor gives up on it.
OUTER_GRACE_S = 10.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0


class ActionPool(Service):
    """Owns one instance per action type (and so their long-lived clients), and the
    reader of events that commands carry by reference."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self._stack = AsyncExitStack()
        self._actions: dict[str, Action] = {}
        self.events = EventStore(settings)
        self.gaps = GapGuard(settings)  #: command records Faust skipped (gaps.py)
        #: Set once the shutdown grace period is over: in-flight actions are then killed.
        self.kill_switch = asyncio.Event()
        #: The lanes and retry timers (made by the first agent that starts).
        self.flow: Flow | None = None

    async def on_first_start(self) -> None:
        await self.add_runtime_dependency(self.events)
        await self.add_runtime_dependency(self.gaps)

    def begin_shutdown(self) -> None:
        """Called when the worker starts to stop (SIGTERM): start the grace period."""
        grace_s = self.settings.actions.shutdown_grace_s
        asyncio.get_running_loop().call_later(grace_s, self.kill_switch.set)

    async def on_start(self) -> None:
        limits = self.settings.actions
        for kind, cls in actions.REGISTRY.items():
            instance = _build(cls, limits, self.settings.app_id)
            self._actions[kind] = await self._stack.enter_async_context(instance)

    async def on_stop(self) -> None:
        await self._stack.aclose()

    def get(self, kind: str) -> Action:
        return self._actions[kind]


def _build(cls: type[Action], limits: ActionLimits, app_id: str) -> Action:
    if issubclass(cls, ExecAction):
        return cls(timeout_s=limits.exec_timeout_s, max_output_bytes=limits.max_output_bytes)
    if issubclass(cls, HttpAction | HttpNotifier):
        return cls(max_response_bytes=limits.max_output_bytes)
    if issubclass(cls, DockerAction):
        return cls(worker_label=app_id, max_output_bytes=limits.max_output_bytes)
    return cls()


def install(app: PosteeApp, pool: ActionPool) -> None:
    """A worker: one agent per action type of its config, on `<prefix>.actions.<type>`,
    and one on the retry topic for those types.

    Only the config's types (its actions', enabled or not): each type is two topics a
    worker consumes (its commands and its ledger's changelog), and every partition a
    Faust worker consumes costs latency on all of them (a bare Faust app at 100 messages/s:
    4-6 ms per hop with 12 partitions, 19-35 ms with 160; the README has the end-to-end
    figures). A reload that brings a new type is refused (see streams/reload.py): its
    commands wait on their topic until a restart."""
    ledgers: dict[str, CommandLedger] = {}
    kinds = app.config.action_types()
    app.action_types = frozenset(kinds)
    for kind in kinds:
        topic = app.postee_topics.actions[kind]
        ledgers[kind] = CommandLedger(app, kind)
        subscribe(app, pool, topic, f"execute_{kind}_commands", ledgers[kind], kind)
    subscribe_retries(app, pool, ledgers.get)


def subscribe(
    app: PosteeApp,
    pool: ActionPool,
    topic: faust.TopicT,
    name: str,
    ledger: CommandLedger,
    kind: str | None = None,
) -> None:
    """An agent executing the commands of `topic` with `ledger`: of one action type
    (`kind`, a worker's type topic) or of any type (`None`, a runner's topic)."""
    agent = _agent(app, pool, name, ledger, kind)
    app.agent(topic, name=name, concurrency=1)(agent)


def subscribe_retries(
    app: PosteeApp, pool: ActionPool, ledger_for: Callable[[str], CommandLedger | None]
) -> None:
    """The agent of this app's retry topic (streams/retries.py): `ledger_for(type)` is the
    ledger of the command topic the retried command came from."""
    name = "schedule_retries"

    async def schedule_retries(stream: faust.StreamT[bytes]) -> None:
        manual = manual_acks(stream)
        flow = _flow(app, pool)
        async for event in manual.events():
            try:
                retry = retries.Retry.from_headers(event.headers)
                if retry is None:
                    raise ValueError("a record without retry headers on the retry topic")
                command = records.decode_command(event.value)
            except (ValueError, EventError) as exc:
                reason = exc.reason if isinstance(exc, EventError) else str(exc)
                await app.publisher.send(
                    app.publisher.dlq_for(event.value, stage="execute", reason=reason, event=event)
                )
                await manual.ack(event)
                continue
            ledger = ledger_for(command.type)
            if ledger is None:
                await _refuse(app, event, command, f"no {command.type} commands run here")
                await manual.ack(event)
                continue
            await flow.scheduler.room()  # bounded: only the retry topic waits here
            job = _job(app, pool, manual, event, ledger, None, command, retry)
            lane = flow.lanes.lane(command.action)
            flow.scheduler.at(retry.due_ms, functools.partial(_start, lane, job, flow.scheduler))

    schedule_retries.__name__ = schedule_retries.__qualname__ = name
    app.agent(app.postee_topics.retry, name=name, concurrency=1)(schedule_retries)


def _start(lane: Lane, job: Callable[[], Awaitable[None]], scheduler: retries.Scheduler) -> None:
    lane.start(job, on_done=scheduler.release)


def _agent(
    app: PosteeApp, pool: ActionPool, name: str, ledger: CommandLedger, kind: str | None
) -> Any:
    async def execute_commands(stream: faust.StreamT[bytes]) -> None:
        manual = manual_acks(stream)  # acknowledged only once fully handled (see ack_after)
        flow = _flow(app, pool)
        async for event in manual.events():
            # Records Faust never handed over first (gaps.py); they are not Faust's to
            # acknowledge, and they are not parked: they are late already.
            for missed in await pool.gaps.missed(event):
                await _dispatch(app, pool, manual, missed, ledger, kind, flow, tracked=False)
            await _dispatch(app, pool, manual, event, ledger, kind, flow)

    execute_commands.__name__ = execute_commands.__qualname__ = name
    return execute_commands


async def _dispatch(
    app: PosteeApp,
    pool: ActionPool,
    stream: faust.StreamT[bytes],
    event: faust.EventT[bytes],
    ledger: CommandLedger,
    kind: str | None,
    flow: Flow,
    *,
    tracked: bool = True,
) -> None:
    """Decode a command record and start it in its action's lane (or park it)."""
    try:
        command = records.decode_command(event.value)
    except EventError as exc:
        await app.publisher.send(
            app.publisher.dlq_for(event.value, stage=exc.stage, reason=exc.reason, event=event)
        )
        if tracked:
            await stream.ack(event)
        return
    lane = flow.lanes.lane(command.action)
    if tracked and lane.full():  # a slow target: park it, never wait for its lane here
        await flow.park(app, stream, event, command)
        return
    # A task of its own, in this context (Faust's current event, for the ledger).
    lane.start(_job(app, pool, stream, event, ledger, kind, command, None, tracked=tracked))


def _job(
    app: PosteeApp,
    pool: ActionPool,
    stream: faust.StreamT[bytes],
    event: faust.EventT[bytes],
    ledger: CommandLedger,
    kind: str | None,
    command: Command,
    retry: retries.Retry | None,
    *,
    tracked: bool = True,
) -> Callable[[], Awaitable[None]]:
    """One command record, handled in its action's lane, then acknowledged (when it is
    Faust's: `tracked`)."""

    async def handle() -> None:
        try:
            # Two records of one command (a redelivered one and its retry, after a crash)
            # run one after the other: the second then sees what the first did.
            async with _flow(app, pool).one_at_a_time(command.command_id):
                with tracing.within(event.headers):  # its attempts and next step: the trace
                    await execute_one(app, pool, kind, event, ledger, command=command, retry=retry)
        except Exception as exc:  # a bug must not stop the agent: record it, go on
            log.exception("command record %s failed", event.message.tp)
            reason = f"internal error: {type(exc).__name__}: {exc}"
            try:
                await app.publisher.send(
                    app.publisher.dlq_for(event.value, stage="execute", reason=reason, event=event)
                )
            except Exception:  # not even the DLQ: not acknowledged, so redelivered
                log.exception("DLQ record for %s not written", event.message.tp)
                return
        if tracked:
            await stream.ack(event)

    return handle


class Flow:
    """The lanes and the retry timers of one app, registered with Faust's flow control
    so that a rebalance or a shutdown drops what has not started (see streams/lanes.py)."""

    def __init__(self, app: PosteeApp, pool: ActionPool) -> None:
        limits = app.settings.actions
        self.lanes = Lanes(
            lambda name: _concurrency(app, pool, name), limits.max_waiting_per_action
        )
        self.scheduler = retries.Scheduler(limits.max_scheduled_retries)
        self.park_delay_s = limits.park_delay_s
        self._parking: set[asyncio.Future[None]] = set()
        self._commands: dict[str, tuple[asyncio.Lock, int]] = {}
        app.flow_control.manage_queue(self)  # type: ignore[arg-type]  # any `clear()`

    @contextlib.asynccontextmanager
    async def one_at_a_time(self, command_id: str) -> AsyncIterator[None]:
        lock, users = self._commands.get(command_id) or (asyncio.Lock(), 0)
        self._commands[command_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._commands[command_id]
            if users <= 1:
                del self._commands[command_id]
            else:
                self._commands[command_id] = (lock, users - 1)

    def clear(self) -> None:
        self.scheduler.clear()
        self.lanes.clear()

    async def park(
        self,
        app: PosteeApp,
        stream: faust.StreamT[bytes],
        event: faust.EventT[bytes],
        command: Command,
        retry: retries.Retry | None = None,
    ) -> None:
        """Put a command whose lane is full on the retry topic, due a little later (not
        an attempt); acknowledge it once the broker has it, without waiting here."""
        parked = (retry.parked if retry else 0) + 1
        delay_s = min(BACKOFF_MAX_S, self.park_delay_s * 2 ** (parked - 1))
        info = retries.Retry(
            due_ms=retries.now_ms() + round(delay_s * 1000),
            first_attempt=retry.first_attempt if retry else 1,
            errors=retry.errors if retry else (),
            parked=parked,
            redrive_id=records.redrive_id(event.headers),
            repeat=retry.repeat if retry else False,
        )
        sent = await app.publisher.enqueue(_retry_message(app, command, info))
        waiting = asyncio.ensure_future(ack_after(stream, event, sent, app.publisher))
        self._parking.add(waiting)
        waiting.add_done_callback(self._parking.discard)


def _flow(app: PosteeApp, pool: ActionPool) -> Flow:
    if pool.flow is None:
        pool.flow = Flow(app, pool)
    return pool.flow


def _concurrency(app: PosteeApp, pool: ActionPool, name: str) -> int:
    """An action's `concurrency` key, else its type's default."""
    spec = app.config.actions.get(name)
    if spec is None:
        return 1  # refused anyway
    value = spec.params.get("concurrency")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    try:
        return pool.get(spec.type).concurrency
    except KeyError:
        return 1


def _retry_message(app: PosteeApp, command: Command, retry: retries.Retry) -> Message:
    publisher = app.publisher

    def instead(reason: str) -> list[Message]:
        outcome = records.outcome_without_run(
            command, "failed", error=f"retry not scheduled: {reason}"
        )
        dlq = publisher.dlq_for(
            None,
            stage="execute",
            reason=f"retry not scheduled: {reason}",
            event_id=command.event_id,
            attempts=list(retry.errors),
        )
        return [publisher.outcome(outcome), dlq]

    topic = app.postee_topics.retry
    return retries.message(topic, command, retry, publisher.max_record_bytes, instead)


async def execute_one(
    app: PosteeApp,
    pool: ActionPool,
    kind: str | None,
    event: faust.EventT[bytes],
    ledger: CommandLedger,
    *,
    command: Command | None = None,
    retry: retries.Retry | None = None,
) -> None:
    """One attempt of one command record: from the topic of its type (a worker), of its
    runner, or from the retry topic (`retry` set). A temporary failure with attempts left
    publishes the outcome and the next attempt's retry record, both acknowledged before
    this returns (and so before the record is); see streams/retries.py."""
    publisher = app.publisher
    if command is None:
        try:
            command = records.decode_command(event.value)
        except EventError as exc:
            await publisher.send(
                publisher.dlq_for(event.value, stage=exc.stage, reason=exc.reason, event=event)
            )
            return
    runner = app.settings.runner_name
    spec, refusal = trust.configured_action(app.config, kind or command.type, command, runner)
    if spec is None:
        await _refuse(app, event, command, str(refusal))
        return
    entry = ledger.lookup(command.command_id)
    # A command redriven from the DLQ runs again, once per redrive id, with fresh retries.
    redrive = records.redrive_id(event.headers)
    again = redrive is not None and entry is not None and entry.get("redrive_id") != redrive
    if entry is not None and entry["state"] == "finished" and not again:
        if retry is None:  # a retry record read again after a restart says nothing new
            await publisher.send(publisher.outcome(_skipped(command, entry, runner)))
        return
    if (
        entry is not None
        and entry["state"] == "retrying"
        and not again
        and command.attempt < int(entry["next_attempt"])
    ):
        return  # superseded: its next attempt is already on the retry topic
    if entry is not None:  # started before, never finished (the worker died), or redriven
        command = replace(command, attempt=int(entry["attempt"]) + 1)
    ledger.started(command.command_id, command.attempt, redrive)
    command = await _with_event(pool, command)
    # The first attempt of this run: the retries count from there (a redrive: fresh ones).
    first = command.attempt if again else retry.first_attempt if retry is not None else 1
    repeat = again or (retry is not None and retry.repeat)
    run = await run_attempt(app, pool.get(command.type), spec, command, pool.kill_switch, first - 1)
    last = run.last
    errors = [*(retry.errors if retry is not None and not again else ()), *run.errors]
    if run.retry_after_s is not None and not last.final:
        due_ms = retries.now_ms() + round(run.retry_after_s * 1000)
        info = retries.Retry(due_ms, first, tuple(errors), redrive_id=redrive, repeat=repeat)
        following_attempt = replace(command, attempt=last.attempt + 1)
        await publisher.send(run.message, _retry_message(app, following_attempt, info))
        ledger.retrying(command.command_id, last.attempt, redrive)
        app.metrics.retry(command.type)
        return
    messages = [run.message]
    if run.exhausted:
        messages.append(
            publisher.dlq_for(
                command.to_json(),
                stage="execute",
                reason=f"attempts exhausted: {last.error}",
                event=event,
                event_id=command.event_id,
                error=last.error,
                attempts=errors,
            )
        )
    # A redrive repeats only this one. Steps whose `on:` this status does not meet end
    # their story with a skipped outcome saying why.
    runner = app.settings.runner_name
    skipped, following = ([], None) if repeat else command.after(last.status)
    messages += [
        publisher.outcome(
            records.outcome_without_run(step, "skipped", detail={"reason": why}, runner=runner)
        )
        for step, why in skipped
    ]
    if following is not None:
        # The next step travels like its head did: by reference when its event is large.
        messages.append(publisher.command(following))
    await publisher.send(*messages)
    ledger.finished(command.command_id, last.status, last.attempt, last.finished_at, redrive)


async def _with_event(pool: ActionPool, command: Command) -> Command:
    """The command with its event, read back from its own record when it came by
    reference. A read that fails leaves the event out; the attempt then fails, saying why."""
    if command.event is not None or command.event_ref is None:
        return command
    try:
        return replace(command, event=await pool.events.fetch(command.event_ref))
    except EventFetchError as exc:
        ref = command.event_ref
        reason = f"could not read the event from {ref.topic}:{ref.partition}:{ref.offset}: {exc}"
        return replace(command, template_error=command.template_error or reason)


async def _refuse(
    app: PosteeApp, event: faust.EventT[bytes], command: Command, reason: str
) -> None:
    """A command this worker will not run: a failed outcome, and the record in the DLQ."""
    log.warning("refused command %s: %s", command.command_id, reason, extra=_ids(command))
    outcome = records.outcome_without_run(
        command,
        "failed",
        error=f"refused: {reason}",
        detail={"config_version": app.config.version},
        runner=app.settings.runner_name,
    )
    publisher = app.publisher
    await publisher.send(
        publisher.outcome(outcome),
        publisher.dlq_for(
            event.value,
            stage="execute",
            reason=f"command refused: {reason}",
            event=event,
            event_id=command.event_id,
        ),
    )


def _skipped(command: Command, entry: dict[str, Any], runner: str | None) -> Outcome:
    detail = {
        "reason": "redelivered after it finished",
        "first_status": entry.get("status"),
        "first_finished_at": entry.get("finished_at"),
    }
    return records.outcome_without_run(
        command, "skipped", detail=detail, attempt=int(entry["attempt"]), runner=runner
    )


@dataclass(frozen=True)
class _Attempt:
    result: ActionResult
    retry_after_s: float | None = None  #: set when the failure is worth another attempt


@dataclass(frozen=True)
class AttemptRun:
    last: Outcome
    #: This attempt's number and error when it failed, for the DLQ record.
    errors: list[dict[str, Any]]
    #: When another attempt should follow (None: final).
    retry_after_s: float | None
    #: The attempt failed in a way worth retrying, but no attempt was left.
    exhausted: bool
    #: The outcome's record, built in the attempt's span (traces: its context rides along).
    message: Message


async def run_attempt(
    app: PosteeApp,
    action: Action,
    spec: config.Action,
    command: Command,
    kill_switch: asyncio.Event,
    attempts_before: int = 0,
) -> AttemptRun:
    """Run attempt `command.attempt` of one command; its outcome is not yet published.
    `spec` is the action as this worker's config defines it: the only source of what to
    run. `attempts_before` attempts of an earlier run (a redrive) do not count against
    the retries."""
    max_attempts = _max_attempts(action, spec.params) + attempts_before
    attempt = command.attempt
    note = trust.version_note(app.config, command)
    dedupe_key = _dedupe_key(app, command)
    with tracing.attempt(command, attempt, app.settings.runner_name) as span:
        started_at, started = records.utc_now(), time.monotonic()
        result = await _attempt(action, spec.params, command, attempt, kill_switch, dedupe_key)
        final = result.retry_after_s is None or attempt >= max_attempts
        errors = []
        if result.result.status == "failed":
            errors.append({"attempt": attempt, "error": result.result.error})
        outcome = Outcome(
            event_id=command.event_id,
            command_id=command.command_id,
            route=command.route,
            action=command.action,
            type=command.type,
            status=result.result.status,
            attempt=attempt,
            started_at=started_at,
            finished_at=records.utc_now(),
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            detail={**result.result.detail, **note},
            error=result.result.error,
            final=final,
            replay_id=command.replay_id,
            dry_run=command.dry_run,
            runner=app.settings.runner_name,
        )
        span.status(outcome.status, final)
        app.metrics.attempt(outcome)
        app.metrics.delivered(command, outcome)
        message = app.publisher.outcome(outcome)
        retry_after_s = None if final else result.retry_after_s
        exhausted = final and result.retry_after_s is not None
    return AttemptRun(outcome, errors, retry_after_s, exhausted, message)


def _dedupe_key(app: PosteeApp, command: Command) -> str | None:
    """The route's dedupe key for this command's event (what a ticketing output needs
    to update an earlier ticket); None without `unique-message-props`."""
    route = app.config.route(command.route)
    if route is None or not route.plugins.unique_message_props or command.event is None:
        return None
    return plugins.dedupe_key(route, command.event)


async def _attempt(
    action: Action,
    params: Mapping[str, Any],
    command: Command,
    attempt: int,
    kill_switch: asyncio.Event,
    dedupe_key: str | None = None,
) -> _Attempt:
    if command.template_error:
        return _Attempt(ActionResult("failed", error=command.template_error))
    try:
        resolved = secrets.resolve(params)  # only now, and never published
    except secrets.MissingSecret as exc:
        return _Attempt(ActionResult("failed", error=str(exc)))
    done = await _run_attempt(action, command, attempt, resolved.params, kill_switch, dedupe_key)
    result = done.result
    scrubbed = ActionResult(
        result.status, resolved.redact(dict(result.detail)), resolved.redact(result.error)
    )
    return replace(done, result=scrubbed)


async def _run_attempt(
    action: Action,
    command: Command,
    attempt: int,
    params: dict[str, Any],
    kill_switch: asyncio.Event,
    dedupe_key: str | None = None,
) -> _Attempt:
    request = ActionRequest(
        command_id=command.command_id,
        event_id=command.event_id,
        action=command.action,
        params=params,
        event=command.event or {},
        event_text=command.event_text,
        template=command.template,
        dry_run=command.dry_run,
        attempt=attempt,
        timeout_s=_timeout_s(action, params),
        dedupe_key=dedupe_key,
    )
    bound_s = request.timeout_s + OUTER_GRACE_S
    running = asyncio.ensure_future(asyncio.wait_for(action.execute(request), bound_s))
    # On SIGTERM Faust waits for in-flight records; the pool's kill switch bounds that
    # wait: past the grace period the action is cancelled (exec kills its process group,
    # docker removes its container) and the attempt is recorded as failed.
    killed = asyncio.ensure_future(kill_switch.wait())
    await asyncio.wait({running, killed}, return_when=asyncio.FIRST_COMPLETED)
    killed.cancel()
    if not running.done():
        running.cancel()
        with contextlib.suppress(BaseException):
            await running
        return _Attempt(
            ActionResult(
                "failed", error="worker shutting down: action killed after the grace period"
            )
        )
    try:
        return _Attempt(running.result())
    except ActionTemporaryError as exc:
        retry_after_s = exc.retry_after_s or _backoff(attempt, _backoff_base_s(params))
        return _Attempt(ActionResult("failed", exc.detail, str(exc)), retry_after_s)
    except ActionPermanentError as exc:
        return _Attempt(ActionResult("failed", exc.detail, str(exc)))
    except TimeoutError:
        return _Attempt(ActionResult("failed", error=f"no result within {bound_s:g}s"))
    except Exception as exc:  # a bug in an action must not stop the agent
        log.exception(
            "action %s failed on command %s",
            command.action,
            command.command_id,
            extra=_ids(command),
        )
        return _Attempt(
            ActionResult("failed", error=f"internal error: {type(exc).__name__}: {exc}")
        )


def _ids(command: Command) -> dict[str, str]:
    """What a log line about a command carries for JSON logs (streams/logs.py)."""
    return {"event_id": command.event_id, "command_id": command.command_id}


def _max_attempts(action: Action, params: Mapping[str, Any]) -> int:
    retries = params.get("retries")
    return int(retries) + 1 if isinstance(retries, int) and retries >= 0 else action.max_attempts


def _timeout_s(action: Action, params: Mapping[str, Any]) -> float:
    value = params.get("timeout")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        try:
            return float(config.parse_duration_s(value))
        except ValueError:
            pass
    return action.timeout_s


def _backoff_base_s(params: Mapping[str, Any]) -> float:
    value = params.get("retry-backoff")
    return float(value) if isinstance(value, int | float) and value > 0 else BACKOFF_BASE_S


def _backoff(attempt: int, base_s: float) -> float:
    """Exponential with jitter, bounded."""
    ceiling = min(BACKOFF_MAX_S, base_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security
