"""The plugin agent: deduplication, rate-limit and aggregation state in Faust tables.

It consumes `<prefix>.plugins`, keyed by plugin key, so each key's requests reach the one
worker that owns that partition and its table entries, in order; the tables' changelog
topics carry the state across restarts and rebalances. Runs with concurrency 1 (it
writes tables).

Timers cannot write tables in Faust (a change must belong to a consumed record), so the
timer that closes aggregation windows only *asks*: it sends a `flush` request for a due
batch to the batch's own partition, and the agent closes it there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

import faust

from streams import plugins, ratelimit, records, tracing
from streams.app import PosteeApp
from streams.errors import EventError
from streams.outcomes import Message, manual_acks
from streams.plugins import PluginDecision, PluginRequest
from streams.records import Command

__all__ = ["install"]

log = logging.getLogger(__name__)

FLUSH_CHECK_INTERVAL_S = 1.0


class PluginState:
    """The two tables, and what the flush timer already asked for."""

    def __init__(self, app: PosteeApp) -> None:
        partitions = app.settings.topics.partitions
        # Keys are strings and values dicts, both as JSON (no Faust model: the
        # contract stays plain JSON, readable from the changelog by anyone).
        json_schema: faust.Schema[str, Any] = faust.Schema(
            key_serializer="json", value_serializer="json"
        )
        self.first_seen = app.Table(
            "dedupe-first-seen",
            partitions=partitions,
            schema=json_schema,
        )
        self.batches = app.Table(
            "aggregation-batches",
            partitions=partitions,
            schema=json_schema,
        )
        #: Rate-limit windows by key (`rate|route|<name>`, `rate|action|<name>`).
        self.rates = app.Table(
            "rate-limit-windows",
            partitions=partitions,
            schema=json_schema,
        )
        self.flush_asked: set[tuple[str, int]] = set()


def install(app: PosteeApp) -> PluginState:
    state = PluginState(app)

    async def apply_plugins(stream: faust.StreamT[bytes]) -> None:
        manual = manual_acks(stream)  # acknowledged only once fully handled (see ack_after)
        async for event in manual.events():
            with tracing.within(event.headers):  # deferred commands keep the event's trace
                await handle(app, state, event)
            await manual.ack(event)

    async def close_due_batches() -> None:
        await ask_flushes(app, state)

    app.agent(app.postee_topics.plugins, name="apply_plugins", concurrency=1)(apply_plugins)
    app.timer(FLUSH_CHECK_INTERVAL_S, name="close_due_batches")(close_due_batches)
    return state


async def handle(app: PosteeApp, state: PluginState, event: faust.EventT[bytes]) -> None:
    try:
        request = plugins.decode_request(event.value)
    except EventError as exc:
        publisher = app.publisher
        await publisher.send(
            publisher.dlq_for(event.value, stage=exc.stage, reason=exc.reason, event=event)
        )
        return
    if request.kind == "dedupe":
        await _dedupe(app, state, request)
    elif request.kind == "aggregate":
        await _aggregate(app, state, request)
    elif request.kind == "rate":
        await _rate(app, state, request)
    elif request.kind == "rate_flush":
        await _rate_flush(app, state, request)
    else:
        await _flush(app, state, request)


async def _dedupe(app: PosteeApp, state: PluginState, request: PluginRequest) -> None:
    entry: dict[str, Any] | None = state.first_seen.get(request.key)
    passes = plugins.dedupe_passes(entry, request.at_ms, request.ttl_s)
    decision = PluginDecision(
        kind="deduplicated",
        event_id=str(request.event_id),
        route=request.route,
        key=request.key,
        decision="passed" if passes else "dropped",
        at=records.utc_now(),
        first_seen=None if passes or entry is None else entry["first_seen"],
        first_event_id=None if passes or entry is None else entry["event_id"],
    )
    app.metrics.plugin_decision("deduplicated", decision.decision)
    messages = [Message(app.postee_topics.outcomes, decision.event_id, decision.to_json())]
    if passes:
        state.first_seen[request.key] = {
            "at_ms": request.at_ms,
            "first_seen": records.iso(datetime.fromtimestamp(request.at_ms / 1000, UTC)),
            "event_id": request.event_id,
        }
        messages += _forward(app, request)
    await app.publisher.send(*messages)


def _forward(app: PosteeApp, request: PluginRequest) -> list[Message]:
    """Commands of a passing event: to the route's rate limit (after dedupe), then to
    aggregation if the route aggregates, else out."""
    route = app.config.route(request.route)
    if request.then_rate and route is not None and route.rate_limit is not None:
        rate = ratelimit.route_request(
            route, request.commands, request.at_ms, request.then_aggregate
        )
        return [app.publisher.plugin_request(rate)]
    if not request.then_aggregate:
        return [app.publisher.command(c) for c in request.commands]
    if route is None:  # the config changed under a queued request: issue plainly
        return [app.publisher.command(c) for c in request.commands]
    chain = [c for head in request.commands for c in head.expanded()]
    return [
        app.publisher.plugin_request(r)
        for r in plugins.aggregation_requests(route, chain, request.at_ms)
    ]


async def _rate(app: PosteeApp, state: PluginState, request: PluginRequest) -> None:
    """One event of a limited route, or one command of a limited action: issued (or
    handed on) within the limit; else a rate_limited record and skipped outcomes."""
    entry, passes, ended = ratelimit.admit(state.rates.get(request.key), request, _now_ms())
    state.rates[request.key] = entry
    app.metrics.plugin_decision("rate_limited", "passed" if passes else "limited")
    messages = _summaries(app, request.key, ended) if ended else []
    if passes and request.action is not None:  # an action's limit: the command goes out
        messages += [app.publisher.command(c, limit=False) for c in request.commands]
    elif passes:
        messages += _forward(app, replace(request, then_rate=False))
    else:
        record = ratelimit.limited_record(entry, request)
        messages.append(Message(app.postee_topics.outcomes, record.event_id, record.to_json()))
        what = f"action '{request.action}'" if request.action else f"route '{request.route}'"
        why = f"rate limited: {what} allows {entry['limit']} (window {record.window_start} on)"
        for head in request.commands:
            for i, command in enumerate(head.expanded()):
                reason = why if i == 0 else f"not run: step '{head.action}' before it was {why}"
                outcome = records.outcome_without_run(
                    command, "skipped", detail={"reason": reason, "rate_limited": True}
                )
                messages.append(app.publisher.outcome(outcome))
    await app.publisher.send(*messages)


async def _rate_flush(app: PosteeApp, state: PluginState, request: PluginRequest) -> None:
    entry = state.rates.get(request.key)
    state.flush_asked.discard((request.key, int(request.opened_ms or 0)))
    if entry is None or entry["start_ms"] != request.opened_ms:
        return  # a newer window: its first event closed this one already
    if not ratelimit.due(entry, _now_ms()):
        return
    state.rates[request.key] = {**entry, "closed": True, "suppressed": 0, "sample": []}
    await app.publisher.send(*_summaries(app, request.key, entry))


def _summaries(app: PosteeApp, key: str, ended: dict[str, Any]) -> list[Message]:
    """The summary of a window that suppressed something; the limit does not apply."""
    commands = ratelimit.summary_commands(key, ended, app.config)
    return [app.publisher.command(c, limit=False) for c in commands]


async def _aggregate(app: PosteeApp, state: PluginState, request: PluginRequest) -> None:
    batch, full = plugins.add_to_batch(
        state.batches.get(request.key),
        request,
        _now_ms(),
        max_bytes=app.settings.ingest.max_record_bytes // 2,
    )
    batch = tracing.remember(batch)  # the member's trace, for the batch's links
    joined = PluginDecision(
        kind="aggregated",
        event_id=str(request.event_id),
        route=request.route,
        key=request.key,
        decision="joined",
        at=records.utc_now(),
        action=request.action,
        batch_id=batch["batch_id"],
        position=len(batch["commands"]),
    )
    app.metrics.plugin_decision("aggregated", joined.decision)
    messages = [Message(app.postee_topics.outcomes, joined.event_id, joined.to_json())]
    if full:
        with tracing.batch(batch):
            messages.append(app.publisher.command(await _close(app, batch)))
        state.batches.pop(request.key, None)
    else:
        state.batches[request.key] = batch
    await app.publisher.send(*messages)


async def _flush(app: PosteeApp, state: PluginState, request: PluginRequest) -> None:
    batch = state.batches.get(request.key)
    state.flush_asked.discard((request.key, int(request.opened_ms or 0)))
    if batch is None or batch["opened_ms"] != request.opened_ms:
        return  # already closed by number, or a newer batch: nothing to do
    state.batches.pop(request.key, None)
    with tracing.batch(batch):
        await app.publisher.send(app.publisher.command(await _close(app, batch)))


async def _close(app: PosteeApp, batch: dict[str, Any]) -> Command:
    """The batch's command, its description rendered by the route template's
    aggregation package (in an evaluator process) when it has one."""
    route = app.config.route(batch["route"])
    if route is None or route.template is None:
        return plugins.batch_command(batch)
    status, rendered = await app.engine.render_batch(route.template, plugins.batch_messages(batch))
    if status != "ok":
        return plugins.batch_command(batch, template_error=str(rendered))
    if rendered is None:
        return plugins.batch_command(batch)
    return plugins.batch_command(batch, rendered["description"], rendered["title"])


async def ask_flushes(app: PosteeApp, state: PluginState) -> None:
    """Ask each due aggregation batch and rate-limit window (of this worker's partitions)
    to close, on its own partition."""
    now = _now_ms()
    tables: list[tuple[Any, Literal["flush", "rate_flush"], str, Any]] = [
        (state.batches, "flush", "opened_ms", plugins.batch_due),
        (state.rates, "rate_flush", "start_ms", ratelimit.due),
    ]
    for table, flush_kind, opened, is_due in tables:
        due = [
            (key, entry)
            for key, entry in list(table.items())
            if is_due(entry, now) and (key, entry[opened]) not in state.flush_asked
        ]
        for key, entry in due:
            state.flush_asked.add((key, entry[opened]))
            flush = PluginRequest(
                kind=flush_kind, key=key, route=entry["route"], at_ms=now, opened_ms=entry[opened]
            )
            await app.publisher.send(app.publisher.plugin_request(flush))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
