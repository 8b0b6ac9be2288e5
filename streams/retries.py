"""Retries off the hot path: a temporary failure is rescheduled as a record, not a sleep.

When an attempt fails in a way worth retrying (the action raised `ActionTemporaryError`)
and attempts are left, the executor publishes the attempt's outcome (`final: false`)
together with a **retry record** on the retry topic, waits until the broker acknowledged
both, and only then acknowledges the command record it was working on. The retry record
is the command itself (`attempt` already the next one), keyed by event id, with headers:

| header | value |
|---|---|
| `postee-retry-at` | when it is due, ms since the epoch (from the backoff or `Retry-After`) |
| `postee-retry-first-attempt` | the first attempt of this run (a redrive counts on from there) |
| `postee-retry-errors` | JSON list of the earlier attempts' `{attempt, error}` (for the DLQ) |
| `postee-retry-parked` | times the command was parked because its action's lane was full |
| `postee-redrive-id` | kept from the command, when it was redriven from the DLQ |
| `postee-retry-repeat` | `1`: this run repeats a finished command (a redrive): no next step |

The retry topic is `<prefix>.retry` for the workers (partitions as the command topics,
so a retry lands in the partition, and the worker, that holds the command's ledger
entry) and `<prefix>.retry.runner.<NAME>` (one partition) for a runner. One agent reads
it, holds each record in memory until it is due (a timer, at most
`POSTEE_MAX_SCHEDULED_RETRIES` at once: beyond that it stops reading the retry topic, and
only the retry topic), then hands it to its action's lane, and acknowledges it once that
attempt's outcome (and its own retry record, if another follows) is on the broker.

Why a topic and timers rather than Kafka tiers of delay topics, or sleeping: a retry
waits in no slot, so nothing else waits behind it; it is on the broker before the record
that caused it is committed, so a worker killed at any moment loses no retry (the
uncommitted retry record is read again after the restart, and a past `retry-at` runs at
once); and its delay is exact (`Retry-After` can be anything), where fixed tiers would
round it, and a single delay topic read in order would hold a short delay behind a long
one. The cost: a retry record waits uncommitted in the retry topic until it ran, so a
restart re-reads the retry records after the oldest pending one; the ledger makes those
re-reads harmless (see executor.py: finished or superseded retries are dropped silently).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from streams import records
from streams.outcomes import Message
from streams.records import Command

__all__ = [
    "HEADER_ERRORS",
    "HEADER_FIRST_ATTEMPT",
    "HEADER_PARKED",
    "HEADER_REPEAT",
    "HEADER_RETRY_AT",
    "Retry",
    "Scheduler",
    "message",
    "now_ms",
]

HEADER_RETRY_AT = "postee-retry-at"
HEADER_FIRST_ATTEMPT = "postee-retry-first-attempt"
HEADER_ERRORS = "postee-retry-errors"
HEADER_PARKED = "postee-retry-parked"
HEADER_REPEAT = "postee-retry-repeat"
#: Each earlier error kept in a retry record is cut to this many characters.
MAX_ERROR_CHARS = 1024


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Retry:
    """What a retry record says beside the command it carries."""

    due_ms: int
    first_attempt: int = 1
    #: The failed attempts before this one: `{"attempt": n, "error": text}`.
    errors: tuple[dict[str, Any], ...] = ()
    parked: int = 0
    redrive_id: str | None = None
    #: This run repeats a finished command (a redrive): it issues no next chain step.
    repeat: bool = False

    def headers(self) -> list[tuple[str, bytes]]:
        errors = [{"attempt": e.get("attempt"), "error": _cut(e.get("error"))} for e in self.errors]
        headers = [
            (HEADER_RETRY_AT, str(self.due_ms).encode()),
            (HEADER_FIRST_ATTEMPT, str(self.first_attempt).encode()),
            (HEADER_ERRORS, json.dumps(errors, ensure_ascii=False).encode()),
            (HEADER_PARKED, str(self.parked).encode()),
            (HEADER_REPEAT, b"1" if self.repeat else b"0"),
        ]
        if self.redrive_id:
            headers.append((records.HEADER_REDRIVE_ID, self.redrive_id.encode()))
        return headers

    @classmethod
    def from_headers(
        cls, headers: Mapping[str, bytes] | Iterable[tuple[str, bytes]] | None
    ) -> Retry | None:
        """The retry a record's headers describe; None for a record without them (a
        command from a command topic). Raises ValueError on malformed headers."""
        items = headers.items() if isinstance(headers, Mapping) else headers or ()
        found = {k: v.decode("utf-8", "replace") for k, v in items if v is not None}
        if HEADER_RETRY_AT not in found:
            return None
        try:
            errors = json.loads(found.get(HEADER_ERRORS) or "[]")
            if not isinstance(errors, list) or not all(isinstance(e, dict) for e in errors):
                raise ValueError("not a list of objects")
            return cls(
                due_ms=int(found[HEADER_RETRY_AT]),
                first_attempt=max(1, int(found.get(HEADER_FIRST_ATTEMPT) or 1)),
                errors=tuple(errors),
                parked=max(0, int(found.get(HEADER_PARKED) or 0)),
                redrive_id=found.get(records.HEADER_REDRIVE_ID) or None,
                repeat=found.get(HEADER_REPEAT) == "1",
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed retry headers: {exc}") from None


def _cut(error: object) -> str | None:
    return None if error is None else str(error)[:MAX_ERROR_CHARS]


def message(
    topic: Any,
    command: Command,
    retry: Retry,
    max_record_bytes: int,
    instead: Callable[[str], list[Message]],
) -> Message:
    """The retry record of `command` (its `attempt` the one to run next). A command too
    large with its event inline travels by reference, as on the command topics."""
    value, headers = command.to_json(), retry.headers()
    envelope = sum(len(k) + len(v) for k, v in headers)
    if len(value) + envelope > max_record_bytes and command.event_ref is not None:
        value = replace(command, event=None).to_json()
    return Message(topic, command.event_id, value, headers, instead=instead)


class Scheduler:
    """Timers for the retry records read from the retry topic, at most `capacity` held
    (waiting for their time, or for their action's lane) at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.held = 0
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._next = 0

    async def room(self) -> None:
        """Wait until another record may be held."""
        while self.held >= self.capacity:
            self._room.clear()
            await self._room.wait()

    def at(self, due_ms: int, fire: Callable[[], None]) -> None:
        """Call `fire` when `due_ms` comes (at once when past), in the caller's context.
        The record stays held until `release()`."""
        self.held += 1
        self._next += 1
        key = self._next
        delay_s = max(0.0, due_ms / 1000 - time.time())

        def due() -> None:
            self._timers.pop(key, None)
            fire()

        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        self._timers[key] = loop.call_later(delay_s, due, context=context)

    def release(self) -> None:
        self.held = max(0, self.held - 1)
        if self.held < self.capacity:
            self._room.set()

    def clear(self) -> None:
        """Forget the records still waiting for their time (a rebalance or a shutdown):
        they were not acknowledged, so they are read again."""
        timers, self._timers = self._timers, {}
        for handle in timers.values():
            handle.cancel()
            self.release()
