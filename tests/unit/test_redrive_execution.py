"""A command redriven from the DLQ runs again once per redrive id, with fresh retries and
its attempt numbers counting on; a plain redelivery of a finished command is still skipped."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from actions.base import Action, ActionRequest, ActionResult, ActionTemporaryError
from streams import config, metrics, records
from streams.executor import execute_one
from streams.ledger import CommandLedger
from streams.settings import Settings


class Flaky(Action):
    type = "exec"

    def __init__(self) -> None:
        self.failing = True
        self.attempts: list[int] = []

    async def execute(self, request: ActionRequest) -> ActionResult:
        self.attempts.append(request.attempt)
        if self.failing:
            raise ActionTemporaryError("target down", retry_after_s=0.001)
        return ActionResult("succeeded")


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    def outcome(self, outcome: records.Outcome) -> tuple[str, Any]:
        return ("outcome", outcome)

    def dlq_for(self, raw: bytes | None, **where: Any) -> tuple[str, Any]:
        return ("dlq", where)

    def command(self, command: records.Command) -> tuple[str, Any]:
        return ("command", command)

    async def send(self, *messages: tuple[str, Any]) -> None:
        self.sent.extend(messages)

    def take(self) -> list[tuple[str, Any]]:
        taken, self.sent = self.sent, []
        return [(kind, (v.status, v.attempt) if kind == "outcome" else None) for kind, v in taken]


def ledger() -> CommandLedger:
    # The real lookup/started/finished over a plain dict instead of a Faust table.
    book = CommandLedger.__new__(CommandLedger)
    book.retention_ms = 3600_000
    book.table = {}  # type: ignore[assignment]
    return book


def record(command: records.Command, redrive_id: str | None = None) -> Any:
    headers = [(records.HEADER_REDRIVE_ID, redrive_id.encode())] if redrive_id else []
    message = SimpleNamespace(topic="p.actions.exec", partition=0, offset=0)
    return SimpleNamespace(value=command.to_json(), headers=headers, message=message)


async def test_redrive_runs_once_per_redrive_id_with_fresh_retries(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "routes:\n  - {name: r, actions: [a, next], serialize-actions: true}\n"
        "actions:\n"
        "  - {name: a, type: exec, enable: true, exec-script: 'true', retries: 1}\n"
        "  - {name: next, type: exec, enable: true, exec-script: 'true'}\n"
    )
    loaded = config.load(cfg)
    event_id = records.new_event_id()
    command = records.Command(
        records.command_id(event_id, "r", "a"),
        event_id,
        "r",
        "a",
        "exec",
        loaded.version,
        {},
        "t",
        then=(records.ChainStep(records.command_id(event_id, "r", "next"), "next", "exec"),),
    )
    publisher, action, book = Publisher(), Flaky(), ledger()
    app = SimpleNamespace(
        publisher=publisher, config=loaded, settings=Settings(), metrics=metrics.Metrics()
    )
    pool = SimpleNamespace(
        get=lambda kind: action, kill_switch=asyncio.Event(), events=None, running=set()
    )
    run = lambda r: execute_one(app, pool, "exec", r, book)  # type: ignore[arg-type]  # noqa: E731

    await run(record(command))
    assert publisher.take() == [
        ("outcome", ("failed", 1)),
        ("outcome", ("failed", 2)),
        ("dlq", None),
        ("command", None),  # the serialized follower, issued after the terminal outcome
    ]
    await run(record(command))  # a redelivery: finished, skipped
    assert publisher.take() == [("outcome", ("skipped", 2))]

    action.failing = False
    await run(record(command, "a" * 32))  # redriven: runs again, attempts count on
    assert publisher.take() == [("outcome", ("succeeded", 3))]  # no follower issued again
    await run(record(command, "a" * 32))  # the same redrive delivered twice
    assert publisher.take() == [("outcome", ("skipped", 3))]

    action.failing = True
    await run(record(command, "b" * 32))  # another redrive gets its own retries
    assert publisher.take() == [
        ("outcome", ("failed", 4)),
        ("outcome", ("failed", 5)),
        ("dlq", None),
    ]
    assert action.attempts == [1, 2, 3, 4, 5]


class Gate(Action):
    type = "exec"

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.runs = 0

    async def execute(self, request: ActionRequest) -> ActionResult:
        self.runs += 1
        await self.open.wait()
        return ActionResult("succeeded")


async def test_a_record_delivered_twice_at_once_runs_once(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        "routes:\n  - {name: r, actions: [a]}\n"
        "actions:\n  - {name: a, type: exec, enable: true, exec-script: 'true'}\n"
    )
    loaded = config.load(cfg)
    event_id = records.new_event_id()
    command = records.Command(
        records.command_id(event_id, "r", "a"), event_id, "r", "a", "exec", loaded.version, {}, "t"
    )
    publisher, action, book = Publisher(), Gate(), ledger()
    app = SimpleNamespace(
        publisher=publisher, config=loaded, settings=Settings(), metrics=metrics.Metrics()
    )
    pool = SimpleNamespace(
        get=lambda kind: action, kill_switch=asyncio.Event(), events=None, running=set()
    )
    first = asyncio.ensure_future(execute_one(app, pool, "exec", record(command), book))  # type: ignore[arg-type]
    while action.runs == 0:  # the first delivery is inside the action
        await asyncio.sleep(0)
    await execute_one(app, pool, "exec", record(command), book)  # type: ignore[arg-type]
    (duplicate,) = publisher.sent
    assert (duplicate[1].status, duplicate[1].detail["reason"]) == (
        "skipped",
        "delivered again while it runs in this process",
    )
    action.open.set()
    await first
    assert publisher.take() == [("outcome", ("skipped", 1)), ("outcome", ("succeeded", 1))]
    assert action.runs == 1 and pool.running == set()
