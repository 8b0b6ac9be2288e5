"""Action agents: one per action type, consuming `<prefix>.actions.<type>`.

For each command: run the action (with an outer time bound), publish one outcome per
attempt, retry what the action calls temporary with exponential backoff and jitter, send a
command that exhausted its attempts to the DLQ with every attempt's error, and, for a
serialized route, issue the next action's command after this one's terminal outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
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
from streams import config, plugins, records, secrets, tracing, trust
from streams.app import PosteeApp
from streams.errors import EventError
from streams.event_store import EventFetchError, EventStore
from streams.gaps import GapGuard
from streams.ledger import CommandLedger
from streams.outcomes import manual_acks
from streams.records import Command, Outcome
from streams.settings import ActionLimits, Settings

__all__ = ["ActionPool", "install", "run_command", "subscribe"]

log = logging.getLogger(__name__)

#: Time an action gets beyond its own timeout before the executor gives up on it.
OUTER_GRACE_S = 10.0
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
ACTION_CONCURRENCY = 4


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
        self.running: set[str] = set()  #: ids of the commands running in this process
        #: Set once the shutdown grace period is over: in-flight actions are then killed.
        self.kill_switch = asyncio.Event()

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
    """A worker: one agent per action type, on `<prefix>.actions.<type>`."""
    for kind in actions.REGISTRY:
        topic = app.postee_topics.actions[kind]
        subscribe(app, pool, topic, f"execute_{kind}_commands", CommandLedger(app, kind), kind)


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
    app.agent(topic, name=name, concurrency=ACTION_CONCURRENCY)(agent)


def _agent(
    app: PosteeApp, pool: ActionPool, name: str, ledger: CommandLedger, kind: str | None
) -> Any:
    async def execute_commands(stream: faust.StreamT[bytes]) -> None:
        manual = manual_acks(stream)  # acknowledged only once fully handled (see ack_after)
        async for event in manual.events():
            for record in [*await pool.gaps.missed(event), event]:  # see gaps.py
                await _execute_guarded(app, pool, kind, record, ledger)
            await manual.ack(event)

    execute_commands.__name__ = execute_commands.__qualname__ = name
    return execute_commands


async def _execute_guarded(
    app: PosteeApp,
    pool: ActionPool,
    kind: str | None,
    event: faust.EventT[bytes],
    ledger: CommandLedger,
) -> None:
    try:
        with tracing.within(event.headers):  # its attempts and next step: the trace
            await execute_one(app, pool, kind, event, ledger)
    except Exception as exc:  # a bug must not stop the agent: record it, go on
        log.exception("command record %s failed", event.message.tp)
        reason = f"internal error: {type(exc).__name__}: {exc}"
        await app.publisher.send(
            app.publisher.dlq_for(event.value, stage="execute", reason=reason, event=event)
        )


async def execute_one(
    app: PosteeApp,
    pool: ActionPool,
    kind: str | None,
    event: faust.EventT[bytes],
    ledger: CommandLedger,
) -> None:
    """One command record: from the topic of its type (a worker) or of its runner."""
    publisher = app.publisher
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
    if command.command_id in pool.running:
        # The same record delivered twice at once (Faust does after a table recovery):
        # the ledger says "started", which would mean a crash and a rerun. It is running.
        detail = {"reason": "delivered again while it runs in this process"}
        skipped = records.outcome_without_run(command, "skipped", detail=detail, runner=runner)
        await publisher.send(publisher.outcome(skipped))
        return
    pool.running.add(command.command_id)
    try:
        await _run_recorded(app, pool, event, command, spec, ledger)
    finally:
        pool.running.discard(command.command_id)


async def _run_recorded(
    app: PosteeApp,
    pool: ActionPool,
    event: faust.EventT[bytes],
    command: Command,
    spec: config.Action,
    ledger: CommandLedger,
) -> None:
    """Run a command the ledger has not seen finish, recording its start and its end."""
    publisher, runner = app.publisher, app.settings.runner_name
    entry = ledger.lookup(command.command_id)
    # A command redriven from the DLQ runs again, once per redrive id, with fresh retries.
    redrive = records.redrive_id(event.headers)
    again = redrive is not None and entry is not None and entry.get("redrive_id") != redrive
    if entry is not None and entry["state"] == "finished" and not again:
        await publisher.send(publisher.outcome(_skipped(command, entry, runner)))
        return
    if entry is not None:  # started before, never finished (the worker died), or redriven
        command = replace(command, attempt=int(entry["attempt"]) + 1)
    ledger.started(command.command_id, command.attempt, redrive)
    command = await _with_event(pool, command)
    extra = command.attempt - 1 if again else 0
    run = await run_command(app, pool.get(command.type), spec, command, pool.kill_switch, extra)
    last = run.last
    ledger.finished(command.command_id, last.status, last.attempt, last.finished_at, redrive)
    if run.exhausted:
        await publisher.send(
            publisher.dlq_for(
                command.to_json(),
                stage="execute",
                reason=f"attempts exhausted: {run.last.error}",
                event=event,
                event_id=command.event_id,
                error=run.last.error,
                attempts=run.errors,
            )
        )
    # A redrive repeats only this one. Steps whose `on:` this status does not meet end
    # their story with a skipped outcome saying why.
    skipped, following = ([], None) if again else command.after(last.status)
    if skipped:
        await publisher.send(
            *(
                publisher.outcome(
                    records.outcome_without_run(
                        step, "skipped", detail={"reason": why}, runner=runner
                    )
                )
                for step, why in skipped
            )
        )
    if following is not None:
        # The next step travels like its head did: by reference when its event is large.
        await publisher.send(publisher.command(following))


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
class CommandRun:
    last: Outcome
    #: Every failed attempt's number and error, for the DLQ record.
    errors: list[dict[str, Any]]
    #: The last attempt failed in a way worth retrying, but no attempt was left.
    exhausted: bool


async def run_command(
    app: PosteeApp,
    action: Action,
    spec: config.Action,
    command: Command,
    kill_switch: asyncio.Event,
    attempts_before: int = 0,
) -> CommandRun:
    """Run every attempt of one command, publishing each outcome. `spec` is the action
    as this worker's config defines it: the only source of what to run. `attempts_before`
    attempts of an earlier run (a redrive) do not count against the retries."""
    max_attempts = _max_attempts(action, spec.params) + attempts_before
    attempt = command.attempt
    errors: list[dict[str, Any]] = []
    note = trust.version_note(app.config, command)
    dedupe_key = _dedupe_key(app, command)
    while True:
        with tracing.attempt(command, attempt, app.settings.runner_name) as span:
            started_at, started = records.utc_now(), time.monotonic()
            result = await _attempt(action, spec.params, command, attempt, kill_switch, dedupe_key)
            final = result.retry_after_s is None or attempt >= max_attempts
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
            await app.publisher.send(app.publisher.outcome(outcome))
        if final:
            return CommandRun(outcome, errors, exhausted=result.retry_after_s is not None)
        await asyncio.sleep(result.retry_after_s or 0)  # backoff between attempts, not pacing
        app.metrics.retry(command.type)
        attempt += 1


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
