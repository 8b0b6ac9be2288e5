"""Silences: time-boxed rules that stop matching events from running their routes' actions.

A silence has a matcher (a route name, a Rego rule body evaluated like a route's
`input:`, or both: that route, for the events the rule matches), a start, an end, an
author and a comment. It lives on the compacted topic `<prefix>.silences`, keyed by its
id; every worker reads the whole topic (`silence_reader.py`) and the router applies the
silences active at routing time: a silenced route issues no command, its `routed` record
names the silence(s), and a `kind: silenced` record says what was held back. Never a
silent drop.

Expiring writes the silence again with `end` set to now and `expired_by`/`expired_at`
(not a tombstone): compaction keeps that last version, so `postee silence list --all`
still shows who expired what and when, and a worker that starts later reads the same
end. An expired or ended silence is ignored by time alone; no record needs to arrive.

Rego matchers are never evaluated here or in the event loop: the router hands the active
ones to the evaluator process with the event (`evaluator.Evaluator.evaluate`), which
compiles each distinct set once and evaluates it on the whole event in the same job as
the routes (see evaluator.py). Route-name matchers need no engine.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from streams import records
from streams.errors import EventError
from streams.records import JsonRecord

__all__ = [
    "Silence",
    "Silenced",
    "decode_silence",
    "describe",
    "new_silence_id",
    "silenced_routes",
]


def new_silence_id() -> str:
    return f"sil-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Silence(JsonRecord):
    """A value of `<prefix>.silences` (key: `id`)."""

    id: str
    start: str  #: ISO 8601 (ours: UTC, milliseconds, Z)
    end: str
    author: str
    comment: str
    created_at: str
    route: str | None = None  #: silence this route (with `rule`: only for events it matches)
    rule: str | None = None  #: a Rego rule body, like a route's `input:`
    expired_by: str | None = None  #: set by `postee silence expire`
    expired_at: str | None = None
    kind: str = "silence"

    def active(self, now: datetime) -> bool:
        return _time(self.start) <= now < _time(self.end)

    def state(self, now: datetime) -> str:
        """pending (starts later), active, ended (its time ran out) or expired (ended
        by `postee silence expire`)."""
        if self.active(now):
            return "active"
        if now < _time(self.start):
            return "pending"
        return "expired" if self.expired_by else "ended"

    def matcher(self) -> str:
        """The matcher in words, for tables and records."""
        parts = [f"route {self.route}"] if self.route else []
        if self.rule:
            parts.append(f"rule {' '.join(self.rule.split())}")
        return " and ".join(parts)

    def expired(self, by: str, now: datetime) -> Silence:
        at = records.iso(now)
        end = at if _time(self.end) > now else self.end
        start = self.start if _time(self.start) <= now else at
        return replace(self, start=start, end=end, expired_by=by, expired_at=at)

    @property
    def rule_key(self) -> tuple[str, str] | None:
        """(id, rule) for the evaluator, when the matcher has a rule."""
        return (self.id, self.rule) if self.rule else None


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def decode_silence(raw: bytes | None, key: str | None) -> Silence | None:
    """A record of the silences topic; None for a tombstone. Raises EventError."""
    if raw is None:
        return None
    value = records.parse_json_object(raw, stage="decode-silence")
    problems = records.schema_errors("silence", value)
    if problems:
        raise EventError("decode-silence", "not a valid silence: " + "; ".join(problems[:5]))
    if key is not None and value["id"] != key:
        raise EventError("decode-silence", f"silence {value['id']!r} under key {key!r}")
    fields = {k: v for k, v in value.items() if k in Silence.__dataclass_fields__}
    silence = Silence(**fields)
    try:
        if _time(silence.end) < _time(silence.start):
            raise EventError("decode-silence", "a silence cannot end before it starts")
    except ValueError as exc:
        raise EventError("decode-silence", f"not a time: {exc}") from None
    return silence


def silenced_routes(
    routes: Iterable[str], active: Iterable[Silence], rule_matches: frozenset[str]
) -> dict[str, list[str]]:
    """route -> ids of the silences holding it, for the matched `routes`. `rule_matches`:
    ids of the rule silences whose rule matched the event (from the evaluator)."""
    held: dict[str, list[str]] = {}
    silences = list(active)
    for route in routes:
        ids = [
            s.id
            for s in silences
            if (s.route is None or s.route == route) and (s.rule is None or s.id in rule_matches)
        ]
        if ids:
            held[route] = ids
    return held


@dataclass(frozen=True)
class Silenced(JsonRecord):
    """Written to the outcomes topic under the event's id: what a silence held back."""

    event_id: str
    at: str
    #: route -> the commands it did not issue, and the silences that held it
    routes: list[dict[str, Any]]
    silences: list[dict[str, Any]] = field(default_factory=list)
    replay_id: str | None = None
    kind: str = "silenced"


def describe(silence: Silence) -> dict[str, Any]:
    """What a silenced record says about a silence."""
    return {
        "id": silence.id,
        "matcher": silence.matcher(),
        "end": silence.end,
        "author": silence.author,
        "comment": silence.comment,
    }
