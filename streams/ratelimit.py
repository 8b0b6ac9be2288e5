"""Rate limits per route and per action (the pure parts; the state is in plugin_agent.py).

`rate-limit: N/unit` on a route counts the route's matching events; on an action it
counts that action's commands, from every route. A window opens with the first event
after the previous window ended and lasts the unit (`3/h`: an hour; `10/5m`: five
minutes); it lets N through, plus what quiet windows left unused, up to `burst` (a
token bucket refilled once per window; the first window starts full). What is over is
never dropped silently: it gets a `kind: rate_limited` record (naming route or action,
the window and the limit) and a `skipped` outcome for each command it did not issue.
With `rate-limit-summary: true`, a window that suppressed anything ends with one summary
message through the route's actions (or the action), saying how many.

Counting must be right with several workers, so, like dedupe and aggregation, the router
(or whoever issues a command to a limited action) does not decide: it sends a
`PluginRequest(kind="rate")` keyed `rate|route|<name>` or `rate|action|<name>` to
`<prefix>.plugins`, and the one worker owning that key's partition decides with its table.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from streams import records
from streams.config import Action, PosteeConfig, RateLimit, Route
from streams.plugins import PluginRequest
from streams.records import Command, JsonRecord

__all__ = [
    "MAX_SAMPLE_EVENTS",
    "RateLimited",
    "action_request",
    "admit",
    "due",
    "limited_record",
    "route_request",
    "summary_commands",
    "window_closed",
]

#: Suppressed event ids a window keeps, for its summary (table values stay bounded).
MAX_SAMPLE_EVENTS = 20


@dataclass(frozen=True)
class RateLimited(JsonRecord):
    """Written to the outcomes topic under the event's id: it was over a rate limit."""

    event_id: str
    scope: Literal["route", "action"]
    route: str
    action: str | None  #: the limited action (scope "action"); None for a route's limit
    limit: str  #: as written, e.g. "3/h"
    count: int
    per_s: int
    burst: int
    window_start: str
    window_end: str
    suppressed: int  #: this event's place among the window's suppressed ones
    summary: bool  #: a summary message follows at the window's end
    at: str
    command_ids: list[str] = field(default_factory=list)  #: the commands not issued
    replay_id: str | None = None
    kind: str = "rate_limited"


def _request(
    scope: str, name: str, limit: RateLimit, command: Command, at_ms: int, **extra: Any
) -> PluginRequest:
    key = f"rate|{scope}|{name}"
    if command.replay_id:  # a replay is limited among itself, not against live events
        key = f"{key}|replay:{command.replay_id}"
    return PluginRequest(
        kind="rate",
        key=key,
        route=command.route,
        at_ms=at_ms,
        event_id=command.event_id,
        action=name if scope == "action" else None,
        number=limit.count,
        timeout_s=limit.per_s,
        burst=limit.burst,
        summary=limit.summary,
        limit=limit.text,
        **extra,
    )


def route_request(
    route: Route, head: list[Command], at_ms: int, then_aggregate: bool
) -> PluginRequest:
    """The request deciding whether one event of `route` (its head commands) passes."""
    assert route.rate_limit is not None
    return _request(
        "route", route.name, route.rate_limit, head[0], at_ms,
        commands=head, then_aggregate=then_aggregate,
    )  # fmt: skip


def action_request(action: Action, command: Command, at_ms: int) -> PluginRequest:
    """The request deciding whether one command of a limited `action` is issued."""
    assert action.rate_limit is not None
    return _request("action", action.name, action.rate_limit, command, at_ms, commands=[command])


def _new_window(request: PluginRequest, now_ms: int, tokens: int) -> dict[str, Any]:
    return {
        "start_ms": now_ms,
        "tokens": tokens,
        "suppressed": 0,
        "sample": [],
        "closed": False,
        "scope": "action" if request.action else "route",
        "route": request.route,
        "action": request.action,
        "limit": request.limit,
        "count": int(request.number or 1),
        "per_s": int(request.timeout_s or 1),
        "burst": int(request.burst or request.number or 1),
        "summary": request.summary,
    }


def window_closed(entry: dict[str, Any], now_ms: int) -> bool:
    return now_ms >= int(entry["start_ms"]) + int(entry["per_s"]) * 1000


def due(entry: dict[str, Any], now_ms: int) -> bool:
    """A window whose time is over and that owes a summary."""
    return (
        bool(entry["summary"])
        and not entry["closed"]
        and int(entry["suppressed"]) > 0
        and window_closed(entry, now_ms)
    )


def admit(
    entry: dict[str, Any] | None, request: PluginRequest, now_ms: int
) -> tuple[dict[str, Any], bool, dict[str, Any] | None]:
    """(the key's new state, whether this request passes, the window that just ended
    if it owes a summary). A new window gets the unit's count per window that passed
    since the last one began, on top of what was left, up to the burst."""
    ended = None
    if entry is None:
        entry = _new_window(request, now_ms, int(request.burst or request.number or 1))
    elif window_closed(entry, now_ms):
        ended = entry if due(entry, now_ms) else None
        per_ms = int(entry["per_s"]) * 1000
        windows = (now_ms - int(entry["start_ms"])) // per_ms
        fresh = _new_window(request, now_ms, 0)
        fresh["tokens"] = min(fresh["burst"], int(entry["tokens"]) + windows * fresh["count"])
        entry = fresh
    if int(entry["tokens"]) > 0:
        return {**entry, "tokens": int(entry["tokens"]) - 1}, True, ended
    sample = list(entry["sample"])
    if len(sample) < MAX_SAMPLE_EVENTS and request.event_id:
        sample.append(request.event_id)
    return {**entry, "suppressed": int(entry["suppressed"]) + 1, "sample": sample}, False, ended


def limited_record(entry: dict[str, Any], request: PluginRequest) -> RateLimited:
    """The record of one request over the limit (`entry`: the state after `admit`)."""
    start = int(entry["start_ms"])
    return RateLimited(
        event_id=str(request.event_id),
        scope="action" if request.action else "route",
        route=request.route,
        action=request.action,
        limit=str(entry["limit"]),
        count=int(entry["count"]),
        per_s=int(entry["per_s"]),
        burst=int(entry["burst"]),
        window_start=_iso(start),
        window_end=_iso(start + int(entry["per_s"]) * 1000),
        suppressed=int(entry["suppressed"]),
        summary=bool(entry["summary"]),
        at=records.utc_now(),
        command_ids=[c.command_id for head in request.commands for c in head.expanded()],
        replay_id=request.commands[0].replay_id if request.commands else None,
    )


def _iso(ms: int) -> str:
    return records.iso(datetime.fromtimestamp(ms / 1000, UTC))


def summary_commands(key: str, entry: dict[str, Any], config: PosteeConfig) -> list[Command]:
    """The summary of a window that suppressed something: one command per enabled
    action of the route (scope route) or for the action (scope action), under the
    route that last asked (a route that lists it, so the executor accepts it)."""
    route = config.route(str(entry["route"]))
    if route is None:
        return []
    names = [str(entry["action"])] if entry["scope"] == "action" else list(route.actions)
    start = int(entry["start_ms"])
    end = start + int(entry["per_s"]) * 1000
    window_id = hashlib.sha256(f"{key}|{start}".encode()).hexdigest()[:24]
    what = f"action '{entry['action']}'" if entry["scope"] == "action" else f"route '{route.name}'"
    title = f"{entry['suppressed']} suppressed by the rate limit of {what} ({entry['limit']})"
    description = (
        f"{entry['suppressed']} {'commands' if entry['scope'] == 'action' else 'events'} "
        f"over the rate limit of {what} ({entry['limit']}) were not acted on between "
        f"{_iso(start)} and {_iso(end)}. Suppressed events (first {MAX_SAMPLE_EVENTS}): "
        f"{', '.join(entry['sample'])}"
    )
    summary = {
        "scope": entry["scope"],
        "route": route.name,
        "action": entry["action"],
        "limit": entry["limit"],
        "window_start": _iso(start),
        "window_end": _iso(end),
        "suppressed": entry["suppressed"],
        "sample_event_ids": entry["sample"],
    }
    commands = []
    for name in names:
        action = config.actions.get(name)
        if action is None or not action.enable or name not in route.actions:
            continue
        named_by_event = bool(action.runs_on and action.runs_on.startswith("event.input."))
        commands.append(
            Command(
                command_id=records.command_id(f"ratelimit:{window_id}", route.name, name),
                event_id=f"ratelimit:{window_id}",
                route=route.name,
                action=name,
                type=action.type,
                config_version=config.version,
                event={"rate_limit_summary": summary},
                issued_at=records.utc_now(),
                template={"title": title, "description": description, "url": None},
                template_error=(
                    f"runs-on '{action.runs_on}': a summary names no runner"
                    if named_by_event
                    else None
                ),
                runs_on=None if named_by_event else action.runs_on,
            )
        )
    return commands
