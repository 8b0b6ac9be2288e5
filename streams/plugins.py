"""Postee's plugins, done on Kafka: deduplication and aggregation (the pure parts).

Deduplication (`unique-message-props`, `unique-message-timeout`): the key is the route
plus the values at the listed paths (an array step takes its first element, as upstream),
so it is scoped per route and a route with several actions runs all of them once. The TTL
is checked at event time. An event with none of the props passes, with a note.

Aggregation (`aggregate-message-number`, `aggregate-message-timeout`): per (route, action),
so a route's actions never share a queue. A batch closes when it holds N events or when
its window (opened by its first event) times out; one command then carries them all.

Both need state that several workers share correctly, so the router does not decide: it
sends a `PluginRequest` keyed by the plugin key to `<prefix>.plugins`, and the plugin agent
(`plugin_agent.py`), which owns that key's partition and its Faust table, decides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from actions.substitution import lookup
from streams import records
from streams.config import Route
from streams.errors import EventError
from streams.records import Command, IncomingEvent, JsonRecord

__all__ = [
    "MAX_BATCH_EVENTS",
    "PluginDecision",
    "PluginRequest",
    "add_to_batch",
    "aggregation_requests",
    "batch_command",
    "decode_request",
    "dedupe_key",
    "dedupe_passes",
]

#: A batch closes at this size even without `aggregate-message-number`: table values and
#: command records stay bounded.
MAX_BATCH_EVENTS = 500


@dataclass(frozen=True)
class PluginRequest(JsonRecord):
    kind: Literal["dedupe", "aggregate", "flush", "rate", "rate_flush"]
    key: str  #: the dedupe or aggregation key; also the record key, hence the partition
    route: str
    at_ms: int  #: event time (dedupe TTL) or request time
    event_id: str | None = None
    commands: list[Command] = field(default_factory=list)
    ttl_s: int | None = None  #: dedupe: None = duplicates never pass again
    then_aggregate: bool = False  #: dedupe: hand passing commands on to aggregation
    action: str | None = None  #: aggregate: the one action of this key
    number: int | None = None
    timeout_s: int | None = None
    opened_ms: int | None = None  #: flush: the batch this flush is for
    then_rate: bool = False  #: dedupe: hand passing commands on to the route's rate limit
    burst: int | None = None  #: rate: the most a window lets through (see ratelimit.py)
    summary: bool = False  #: rate: summarise what a window suppressed at its end
    limit: str | None = None  #: rate: as written, e.g. "3/h"


@dataclass(frozen=True)
class PluginDecision(JsonRecord):
    """Written to the outcomes topic under the event's id, so its timeline shows it."""

    kind: Literal["deduplicated", "aggregated"]
    event_id: str
    route: str
    key: str
    decision: Literal["passed", "dropped", "joined"]
    at: str
    first_seen: str | None = None  #: dedupe: when the key was first seen (in its TTL)
    first_event_id: str | None = None
    action: str | None = None
    batch_id: str | None = None
    position: int | None = None  #: aggregate: the event's place in its batch


def dedupe_key(route: Route, payload: dict[str, Any]) -> str | None:
    """`<route>|<values as JSON>`, or None when the event has none of the props."""
    values = [lookup(payload, prop) for prop in route.plugins.unique_message_props]
    if all(v is None for v in values):
        return None
    return f"{route.name}|{json.dumps(values, separators=(',', ':'), sort_keys=True)}"


def dedupe_passes(entry: dict[str, Any] | None, at_ms: int, ttl_s: int | None) -> bool:
    """True when no earlier event holds the key, or its hold expired at this event's time."""
    if entry is None:
        return True
    return ttl_s is not None and at_ms - int(entry["at_ms"]) >= ttl_s * 1000


def aggregation_requests(route: Route, commands: list[Command], at_ms: int) -> list[PluginRequest]:
    """One aggregate request per (route, action)."""
    return [
        PluginRequest(
            kind="aggregate",
            key=f"{route.name}|{command.action}",
            route=route.name,
            at_ms=at_ms,
            event_id=command.event_id,
            commands=[replace(command, then=())],
            action=command.action,
            number=route.plugins.aggregate_message_number,
            timeout_s=route.plugins.aggregate_message_timeout_s,
        )
        for command in commands
    ]


#: A member whose event is larger than this keeps it by reference in the batch table.
MAX_INLINE_MEMBER_BYTES = 64 * 1024


def add_to_batch(
    batch: dict[str, Any] | None,
    request: PluginRequest,
    now_ms: int,
    max_bytes: int = 512 * 1024,
) -> tuple[dict[str, Any], bool]:
    """The batch with this request's command added, and whether it is now full: it
    holds its number of events, or its table entry reached `max_bytes` (a table value
    is a record of the changelog topic, so it must stay under the record limit)."""
    if batch is None:
        opened = now_ms
        batch = {
            "batch_id": hashlib.sha256(f"{request.key}|{opened}".encode()).hexdigest()[:24],
            "opened_ms": opened,
            "route": request.route,
            "action": request.action,
            "timeout_s": request.timeout_s,
            "commands": [],
        }
    members = [_member(c) for c in request.commands]
    batch = {**batch, "commands": [*batch["commands"], *members]}
    batch["bytes"] = int(batch.get("bytes", 0)) + sum(len(json.dumps(m)) for m in members)
    limit = min(request.number or MAX_BATCH_EVENTS, MAX_BATCH_EVENTS)
    return batch, len(batch["commands"]) >= limit or batch["bytes"] >= max_bytes


def _member(command: Command) -> dict[str, Any]:
    member = command.to_dict()
    if command.event_ref is not None and len(json.dumps(member["event"])) > MAX_INLINE_MEMBER_BYTES:
        member["event"] = None  # it stays on its own record (event_ref)
    return member


def batch_due(batch: dict[str, Any], now_ms: int) -> bool:
    timeout = batch.get("timeout_s")
    return timeout is not None and now_ms - int(batch["opened_ms"]) >= timeout * 1000


def batch_messages(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's rendered messages (title, description, url): an aggregation template's
    input, as upstream."""
    members = [records.command_from_dict(c) for c in batch["commands"]]
    return [
        {
            "title": (m.template or {}).get("title", ""),
            "description": m.event_text,
            "url": (m.template or {}).get("url"),
        }
        for m in members
    ]


def batch_command(
    batch: dict[str, Any],
    description: str | None = None,
    title: str | None = None,
    template_error: str | None = None,
) -> Command:
    """One command carrying every event of the batch. Its description is the JSON list of
    the events' descriptions, unless an aggregation template rendered one."""
    members = [records.command_from_dict(c) for c in batch["commands"]]
    first = members[0]
    batch_id = str(batch["batch_id"])
    texts = [m.event_text for m in members]
    title = title or f"{len(members)} events on route {first.route}"
    return replace(
        first,
        command_id=records.command_id(
            f"batch:{batch_id}", first.route, first.action, first.replay_id
        ),
        event_id=f"batch:{batch_id}",
        event={"batch_id": batch_id, "events": [m.event for m in members]},
        event_ref=None,  # a batch has no single record; members too large are left out
        issued_at=records.utc_now(),
        template={"title": title, "description": description or json.dumps(texts), "url": None},
        template_error=template_error,
        attempt=1,
        then=(),
        batch_event_ids=tuple(m.event_id for m in members),
    )


def decode_request(raw: bytes | None) -> PluginRequest:
    if raw is None:
        raise EventError("decode-plugin", "record has no value (tombstone)")
    value = records.parse_json_object(raw, stage="decode-plugin")
    try:
        commands = [records.command_from_dict(c) for c in value.get("commands") or []]
        fields = {k: v for k, v in value.items() if k in PluginRequest.__dataclass_fields__}
        return PluginRequest(**{**fields, "commands": commands})
    except (TypeError, KeyError, AttributeError) as exc:
        raise EventError("decode-plugin", f"not a plugin request: {exc}") from None


def event_time_ms(event: IncomingEvent, fallback_ms: int) -> int:
    """The event's arrival time from its header, else the record's own timestamp."""
    if event.received_at:
        try:
            return int(
                datetime.fromisoformat(event.received_at.replace("Z", "+00:00")).timestamp() * 1000
            )
        except ValueError:
            pass
    return fallback_ms
