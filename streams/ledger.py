"""The command ledger: which commands already ran, so a redelivered one is not run twice.

A Faust table per action type, keyed by command id, backed by a changelog topic: it
survives restarts and moves with partitions (commands are keyed by event id, and the
table's changelog follows the command topic's partitions, so a command and its ledger
entry always sit together). Entries expire after a retention (default 7 days): checked on
read, and the changelog itself is compacted and deleted after that time.

A command that finished is skipped on redelivery (`skipped` outcome). One that started
but never finished (the worker died mid-run) runs again, with the same command id and a
higher attempt number, so receivers can tell (Idempotency-Key, POSTEE_COMMAND_ID). One
whose next attempt waits on the retry topic (`retrying`, with `next_attempt`) ignores a
redelivery of an earlier attempt's record: the retry record carries the command on.
A command redriven from the DLQ runs again once per redrive id, attempts counting on.
"""

from __future__ import annotations

import time
from typing import Any

import faust

from streams.app import PosteeApp

__all__ = ["CommandLedger"]


class CommandLedger:
    def __init__(self, app: PosteeApp, kind: str, partitions: int | None = None) -> None:
        """`kind`: an action type (a worker), or "runner": one ledger for every type of a
        runner; `partitions`: those of the command topic it follows (the app's default)."""
        self.retention_ms = app.settings.actions.done_retention_s * 1000
        schema: faust.Schema[str, Any] = faust.Schema(
            key_serializer="json", value_serializer="json"
        )
        self.table = app.Table(
            f"command-ledger-{kind}",
            partitions=partitions or app.settings.topics.partitions,
            schema=schema,
            extra_topic_configs={
                "cleanup.policy": "compact,delete",
                "retention.ms": str(self.retention_ms),
            },
        )

    def lookup(self, command_id: str) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = self.table.get(command_id)
        if entry is None or _now_ms() - int(entry["at_ms"]) > self.retention_ms:
            return None
        return entry

    def started(self, command_id: str, attempt: int, redrive_id: str | None = None) -> None:
        self.table[command_id] = {
            "state": "started",
            "attempt": attempt,
            "at_ms": _now_ms(),
            "redrive_id": redrive_id,
        }

    def retrying(self, command_id: str, attempt: int, redrive_id: str | None = None) -> None:
        """Attempt `attempt` failed and attempt `attempt + 1` is on the retry topic: a
        redelivery of an earlier record of this command is superseded."""
        self.table[command_id] = {
            "state": "retrying",
            "attempt": attempt,
            "next_attempt": attempt + 1,
            "at_ms": _now_ms(),
            "redrive_id": redrive_id,
        }

    def finished(
        self,
        command_id: str,
        status: str,
        attempt: int,
        finished_at: str,
        redrive_id: str | None = None,
    ) -> None:
        self.table[command_id] = {
            "state": "finished",
            "status": status,
            "attempt": attempt,
            "finished_at": finished_at,
            "at_ms": _now_ms(),
            "redrive_id": redrive_id,
        }


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
