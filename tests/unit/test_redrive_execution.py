"""A command redriven from the DLQ runs again once per redrive id, with fresh retries and
its attempt numbers counting on; a plain redelivery of a finished command is still skipped.
Every attempt is one call: a temporary failure yields a retry record, run in turn."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from actions.base import Action, ActionRequest, ActionResult, ActionTemporaryError
from streams import config, metrics, records, retries
from streams.executor import execute_one
from streams.ledger import CommandLedger
from streams.outcomes import Message
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
    max_record_bytes = 1 << 20

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def outcome(self, outcome: records.Outcome) -> tuple[str, Any]:
        return ("outcome", outcome)

    def dlq_for(self, raw: bytes | None, **where: Any) -> tuple[str, Any]:
        return ("dlq", where)

    def command(self, command: records.Command) -> tuple[str, Any]:
        return ("command", command)

    async def send(self, *messages: Any) -> None:
        self.sent.extend(messages)

    def take(self) -> list[tuple[str, Any]]:
        taken, self.sent = self.sent, []
        return [_shown(m) for m in taken]

    def retry_records(self) -> list[Message]:
        return [m for m in self.sent if isinstance(m, Message)]


def _shown(message: Any) -> tuple[str, Any]:
    if isinstance(message, Message):  # a retry record: the attempt it carries
        return ("retry", records.decode_command(message.value).attempt)
    kind, v = message
    return (kind, (v.status, v.attempt, v.final) if kind == "outcome" else None)


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


def retried(message: Message) -> tuple[Any, retries.Retry]:
    """A retry record as the retry agent reads it back."""
    where = SimpleNamespace(topic="p.retry", partition=0, offset=0)
    event = SimpleNamespace(value=message.value, headers=list(message.headers or ()), message=where)
    retry = retries.Retry.from_headers(event.headers)
    assert retry is not None
    return event, retry


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
        publisher=publisher,
        config=loaded,
        settings=Settings(),
        metrics=metrics.Metrics(),
        postee_topics=SimpleNamespace(retry="p.retry"),
    )
    pool = SimpleNamespace(get=lambda kind: action, kill_switch=asyncio.Event(), events=None)

    async def run(event: Any, retry: retries.Retry | None = None) -> None:
        await execute_one(app, pool, "exec", event, book, retry=retry)  # type: ignore[arg-type]

    await run(record(command))
    (retry_record,) = publisher.retry_records()
    assert publisher.take() == [("outcome", ("failed", 1, False)), ("retry", 2)]
    assert book.table[command.command_id]["state"] == "retrying"
    await run(record(command))  # the first record redelivered: superseded by the retry
    assert publisher.take() == []
    await run(*retried(retry_record))
    assert publisher.take() == [
        ("outcome", ("failed", 2, True)),
        ("dlq", None),
        ("command", None),  # the serialized follower, issued after the terminal outcome
    ]
    await run(*retried(retry_record))  # the retry record read again: nothing new
    assert publisher.take() == []
    await run(record(command))  # a redelivery: finished, skipped
    assert publisher.take() == [("outcome", ("skipped", 2, True))]

    action.failing = False
    await run(record(command, "a" * 32))  # redriven: runs again, attempts count on
    assert publisher.take() == [("outcome", ("succeeded", 3, True))]  # no follower again
    await run(record(command, "a" * 32))  # the same redrive delivered twice
    assert publisher.take() == [("outcome", ("skipped", 3, True))]

    action.failing = True
    await run(record(command, "b" * 32))  # another redrive gets its own retries
    (retry_record,) = publisher.retry_records()
    assert publisher.take() == [("outcome", ("failed", 4, False)), ("retry", 5)]
    event, retry = retried(retry_record)
    assert retry.redrive_id == "b" * 32 and retry.first_attempt == 4
    assert [e["attempt"] for e in retry.errors] == [4]
    await run(event, retry)
    assert publisher.take() == [("outcome", ("failed", 5, True)), ("dlq", None)]
    assert action.attempts == [1, 2, 3, 4, 5]
