"""The UI's in-memory index: a bounded recent window of events, folded from the topics.

Pure code: `Index.apply` takes one consumed record (topic kind, key, value, headers,
timestamp, place) and updates the row of its event; the feed (`feed.py`) does the Kafka
part. Nothing here is the record of truth: the timeline page reads the topics again.
At most `max_events` rows, none older than `window_s`; the oldest go first.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams import records
from streams.ui.titles import TITLE_CHARS, event_title

__all__ = ["STATUSES", "CommandState", "DlqEntry", "EventRow", "Index", "Query"]

STATUSES = ("succeeded", "failed", "pending", "dry_run", "skipped")
MAX_DLQ = 2_000


@dataclass
class CommandState:
    command_id: str
    route: str
    action: str
    type: str
    status: str = "pending"  #: pending until a final outcome; then its status
    attempts: int = 0
    replay_id: str | None = None
    dry_run: bool = False


@dataclass
class EventRow:
    event_id: str
    at_ms: int  #: arrival (from a UUIDv7 id, else the first record's timestamp)
    last_ms: int = 0  #: when its latest record was written (bounds the timeline's read)
    source: str = ""
    title: str = ""
    routed: bool = False
    routes: list[str] = field(default_factory=list)
    commands: dict[str, CommandState] = field(default_factory=dict)
    dlq: int = 0
    replays: set[str] = field(default_factory=set)
    error: str | None = None

    def has_status(self, status: str) -> bool:
        if status == "pending" and not self.routed:
            return True
        return any(c.status == status for c in self.commands.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "at": records.iso(datetime.fromtimestamp(self.at_ms / 1000, UTC)),
            "source": self.source,
            "title": self.title,
            "routed": self.routed,
            "routes": self.routes,
            "commands": [vars(c) for c in self.commands.values()],
            "dlq": self.dlq,
            "replays": len(self.replays),
            "error": self.error,
        }


@dataclass
class DlqEntry:
    partition: int
    offset: int
    at_ms: int
    value: dict[str, Any]
    redrives: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        v = self.value
        return {
            "partition": self.partition,
            "offset": self.offset,
            "at": records.iso(datetime.fromtimestamp(self.at_ms / 1000, UTC)),
            **{k: v.get(k) for k in ("stage", "reason", "error", "event_id", "topic")},
            "source": f"{v.get('topic')}[{v.get('partition')}]@{v.get('offset')}",
            "redrives": self.redrives,
        }


@dataclass(frozen=True)
class Query:
    route: str | None = None
    action: str | None = None
    status: str | None = None
    since_ms: int = 0
    until_ms: int | None = None
    ids: frozenset[str] | None = None  #: only these events

    def selects(self, row: EventRow) -> bool:
        return (
            (self.ids is None or row.event_id in self.ids)
            and row.at_ms >= self.since_ms
            and (self.until_ms is None or row.at_ms <= self.until_ms)
            and (self.route is None or self.route in row.routes)
            and (self.action is None or any(c.action == self.action for c in row.commands.values()))
            and (self.status is None or row.has_status(self.status))
        )


class Index:
    def __init__(self, window_s: int, max_events: int) -> None:
        self.window_ms = window_s * 1000
        self.max_events = max_events
        self.rows: OrderedDict[str, EventRow] = OrderedDict()
        self.dlq: deque[DlqEntry] = deque(maxlen=MAX_DLQ)
        #: Per replay id, the statuses of its final outcomes (the replay page's results).
        self.replay_statuses: dict[str, Counter[str]] = {}
        self._floor_ms = 0  #: rows older than this were evicted: do not bring them back

    # --- queries --------------------------------------------------------------------------

    def select(self, query: Query, limit: int) -> list[EventRow]:
        found = []
        for row in reversed(self.rows.values()):  # newest first
            if query.selects(row):
                found.append(row)
                if len(found) >= limit:
                    break
        return found

    def counts(self, query: Query) -> dict[str, dict[str, int]]:
        routes: dict[str, int] = {}
        actions: dict[str, int] = {}
        statuses: dict[str, int] = {}
        selects = query.selects
        for row in self.rows.values():
            if not selects(row):
                continue
            for route in row.routes:
                routes[route] = routes.get(route, 0) + 1
            for command in row.commands.values():
                actions[command.action] = actions.get(command.action, 0) + 1
                statuses[command.status] = statuses.get(command.status, 0) + 1
        return {"routes": routes, "actions": actions, "statuses": statuses}

    # --- folding records ------------------------------------------------------------------

    def apply(
        self,
        kind: str,
        key: bytes | None,
        raw: bytes | None,
        headers: list[tuple[str, bytes]],
        timestamp_ms: int,
        place: tuple[str, int, int],
    ) -> str | None:
        """Fold one record; the id of the event whose row changed, if any."""
        if kind == "dlq":
            return self._dlq(raw, timestamp_ms, place)
        if kind in ("events", "replay"):
            meta = {k: v.decode("utf-8", "replace") for k, v in headers}
            return self._event(kind, raw, meta, timestamp_ms, ":".join(map(str, place)))
        value = _json(raw)
        if not isinstance(value, dict) or not isinstance(value.get("event_id"), str):
            return None
        if kind == "outcomes" and value.get("kind") == "redriven":
            self._redriven(value)
        row = self._row(value["event_id"], timestamp_ms)
        if row is None:
            if value.get("kind") == "outcome":
                self._count_replay(value)
            return None
        if kind == "command":
            self._command(row, value)
        elif value.get("kind") == "routed":
            self._routed(row, value)
        elif value.get("kind") == "outcome":
            self._outcome(row, value)
        return row.event_id

    def _row(self, event_id: str, timestamp_ms: int) -> EventRow | None:
        row = self.rows.get(event_id)
        if row is not None:
            row.last_ms = max(row.last_ms, timestamp_ms)
            return row
        born = records.event_time(event_id)
        at_ms = int(born.timestamp() * 1000) if born else timestamp_ms
        if at_ms < max(self._floor_ms, timestamp_ms - self.window_ms):
            return None
        row = self.rows[event_id] = EventRow(event_id, at_ms, timestamp_ms)
        oldest_ms = timestamp_ms - self.window_ms
        while len(self.rows) > self.max_events or next(iter(self.rows.values())).at_ms < oldest_ms:
            _, evicted = self.rows.popitem(last=False)
            self._floor_ms = max(self._floor_ms, evicted.at_ms)
        return row

    def _event(
        self, kind: str, raw: bytes | None, meta: dict[str, str], at_ms: int, place: str
    ) -> str | None:
        row = self._row(meta.get(records.HEADER_EVENT_ID) or place, at_ms)
        if row is None:
            return None
        if kind == "replay":
            row.replays.add(meta.get(records.HEADER_REPLAY_ID, "?"))
        else:
            row.source = meta.get(records.HEADER_SOURCE, "kafka")
        if not row.title:
            row.title = event_title(_json(raw))
        return row.event_id

    def _routed(self, row: EventRow, value: dict[str, Any]) -> None:
        row.routed = True
        row.source = row.source or str(value.get("source", ""))
        row.routes = sorted(set(row.routes) | set(value.get("routes", [])))
        row.error = value.get("error") or row.error
        for ref in value.get("commands", []):
            if isinstance(ref, dict) and ref.get("command_id") not in row.commands:
                row.commands[ref["command_id"]] = _state(ref, value.get("replay_id"))

    def _command(self, row: EventRow, value: dict[str, Any]) -> None:
        template = value.get("template")
        if isinstance(template, dict) and isinstance(template.get("title"), str):
            row.title = template["title"][:TITLE_CHARS]
        if value.get("command_id") not in row.commands:
            row.commands[value["command_id"]] = _state(value, value.get("replay_id"))
        row.commands[value["command_id"]].dry_run = bool(value.get("dry_run"))

    def _outcome(self, row: EventRow, value: dict[str, Any]) -> None:
        command = row.commands.get(value.get("command_id", ""))
        if command is None:
            command = row.commands[value["command_id"]] = _state(value, value.get("replay_id"))
        command.attempts = max(command.attempts, int(value.get("attempt", 1)))
        command.dry_run = bool(value.get("dry_run"))
        status = str(value.get("status", "pending"))
        if status == "skipped" and command.status != "pending":
            return  # a redelivery of a finished command: its first outcome stands
        if value.get("final", True):
            command.status = status
            self._count_replay(value)

    def _count_replay(self, value: dict[str, Any]) -> None:
        if value.get("replay_id") and value.get("final", True):
            counter = self.replay_statuses.setdefault(value["replay_id"], Counter())
            counter[str(value.get("status"))] += 1

    def _dlq(self, raw: bytes | None, timestamp_ms: int, place: tuple[str, int, int]) -> str | None:
        value = _json(raw)
        if not isinstance(value, dict):
            value = {"stage": "?", "reason": "undecodable DLQ record"}
        self.dlq.append(DlqEntry(place[1], place[2], timestamp_ms, value))
        row = self.rows.get(value.get("event_id") or "")
        if row is None:
            return None
        row.dlq += 1
        row.last_ms = max(row.last_ms, timestamp_ms)
        return row.event_id

    def _redriven(self, value: dict[str, Any]) -> None:
        place = value.get("dlq") or {}
        for entry in self.dlq:
            if (entry.partition, entry.offset) == (place.get("partition"), place.get("offset")):
                entry.redrives.append({"at": value.get("at"), "to": value.get("to")})

    def dlq_entry(self, partition: int, offset: int) -> DlqEntry | None:
        return next((e for e in self.dlq if (e.partition, e.offset) == (partition, offset)), None)


def _state(value: dict[str, Any], replay_id: str | None) -> CommandState:
    return CommandState(
        command_id=str(value.get("command_id")),
        route=str(value.get("route", "")),
        action=str(value.get("action", "")),
        type=str(value.get("type", "")),
        replay_id=replay_id,
    )


def _json(raw: bytes | None) -> Any:
    try:
        return json.loads(raw or b"null")
    except ValueError:
        return None
