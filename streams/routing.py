"""The routing decision for one event: which routes match, which commands to issue.

Pure: no Kafka, no Faust. The router agent decodes a record, calls `decide`, and sends
what it returns. Keeping it pure is what makes replaying an event give the same commands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from actions.substitution import substitute
from streams import ratelimit, records
from streams.config import Action, PosteeConfig, Route
from streams.evaluator import Evaluation
from streams.plugins import PluginRequest, aggregation_requests, dedupe_key
from streams.records import ChainStep, Command, CommandRef, IncomingEvent, Routed
from streams.settings import RUNNER_NAME
from streams.silences import Silence, Silenced, describe, silenced_routes

__all__ = ["Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    routed: Routed
    #: Commands to send now. A serialized route contributes only its first command; the
    #: rest ride in that command's `then` and are issued by the executor, one by one.
    commands: tuple[Command, ...]
    #: Commands of routes with plugins go to the plugin agent instead (see plugins.py).
    plugin_requests: tuple[PluginRequest, ...] = ()
    #: What the active silences held back (None when they held nothing).
    silenced: Silenced | None = None


def decide(
    event: IncomingEvent,
    config: PosteeConfig,
    evaluation: Evaluation,
    at_ms: int = 0,
    silences: Sequence[Silence] = (),
) -> Decision:
    """Build the commands of an event the engine has evaluated (`evaluator.py`: the
    matched routes, their rendered templates, the rule silences matching it). A route
    held by one of the active `silences` issues nothing; the decision says so."""
    routes = [r for r in config.routes if r.name in evaluation.matched]
    now = records.utc_now()
    commands: list[Command] = []
    requests: list[PluginRequest] = []
    refs: list[CommandRef] = []
    skipped: list[dict[str, str]] = []
    notes = [
        {"route": "(silences)", "note": f"silence {sid} ignored: its rule fails: {why}"}
        for sid, why in sorted(evaluation.silence_errors.items())
    ]
    held = silenced_routes([r.name for r in routes], silences, evaluation.silenced)
    for route in routes:
        if route.name in held:
            continue
        rendered = _render(route, evaluation)
        chain = _route_commands(event, route, config, now, rendered)
        skipped += [
            {"route": route.name, "reason": f"action '{name}' is not enabled"}
            for name in route.actions
            if not config.actions[name].enable
        ]
        if not chain:
            continue
        head = [_chained(chain, route)] if route.serialize_actions else chain
        plugin, route_requests, note = _plugins(route, event, head, at_ms)
        if note:
            notes.append({"route": route.name, "note": note})
        refs.extend(
            CommandRef(
                c.command_id,
                c.route,
                c.action,
                c.type,
                queued=route.serialize_actions and i > 0,
                deferred=plugin,
                runs_on=c.runs_on,
            )
            for i, c in enumerate(chain)
        )
        if route_requests:
            requests.extend(route_requests)
        else:
            commands.extend(head)
    routed = Routed(
        event_id=event.event_id,
        source=event.source,
        routes=[r.name for r in routes],
        commands=refs,
        skipped=skipped,
        notes=notes,
        at=now,
        replay_id=event.replay_id,
        config_version=config.version,
        silenced=[{"route": r, "silences": ids} for r, ids in held.items()],
    )
    return Decision(
        routed=routed,
        commands=tuple(commands),
        plugin_requests=tuple(requests),
        silenced=_silenced(event, config, held, silences, now),
    )


def _silenced(
    event: IncomingEvent,
    config: PosteeConfig,
    held: dict[str, list[str]],
    silences: Sequence[Silence],
    now: str,
) -> Silenced | None:
    if not held:
        return None
    used = {sid for ids in held.values() for sid in ids}
    routes = []
    for name, ids in held.items():
        route = config.route(name)
        names = [a for a in route.actions if config.actions[a].enable] if route else []
        routes.append({"route": name, "silences": ids, "actions": names})
    return Silenced(
        event_id=event.event_id,
        at=now,
        routes=routes,
        silences=[describe(s) for s in silences if s.id in used],
        replay_id=event.replay_id,
    )


def _plugins(
    route: Route, event: IncomingEvent, head: list[Command], at_ms: int
) -> tuple[str | None, list[PluginRequest], str | None]:
    """(the plugin deferring the route's commands, its requests, a note for the record).
    In order: dedupe, then the route's rate limit, then aggregation; each stage hands
    what passes to the next (plugin_agent.py)."""
    plugins = route.plugins
    aggregates = bool(plugins.aggregate_message_number or plugins.aggregate_message_timeout_s)
    note = None
    if plugins.unique_message_props:
        key = dedupe_key(route, event.payload)
        if key is not None:
            if event.replay_id:  # a replay dedupes among itself, not against live events
                key = f"{key}|replay:{event.replay_id}"
            request = PluginRequest(
                kind="dedupe",
                key=key,
                route=route.name,
                at_ms=at_ms,
                event_id=event.event_id,
                commands=head,
                ttl_s=plugins.unique_message_timeout_s,
                then_aggregate=aggregates,
                then_rate=route.rate_limit is not None,
            )
            return "dedupe", [request], None
        note = (
            "not deduplicated: the event has none of the unique-message-props "
            f"({', '.join(plugins.unique_message_props)})"
        )
    if route.rate_limit is not None:
        return "rate-limit", [ratelimit.route_request(route, head, at_ms, aggregates)], note
    if aggregates:
        chain = [c for command in head for c in command.expanded()]
        return "aggregate", aggregation_requests(route, chain, at_ms), note
    return None, [], note


def _render(route: Route, evaluation: Evaluation) -> tuple[dict[str, Any] | None, str | None]:
    """The route's rendered template, or why it could not render."""
    if route.template is None:
        return None, None
    if route.template in evaluation.template_errors:
        return None, evaluation.template_errors[route.template]
    rendered = evaluation.rendered.get(route.template)
    if rendered is None:
        return None, f"template '{route.template}': no templates were compiled"
    return dict(rendered), None


def _route_commands(
    event: IncomingEvent,
    route: Route,
    config: PosteeConfig,
    now: str,
    rendered: tuple[dict[str, Any] | None, str | None],
) -> list[Command]:
    commands = []
    for name in route.actions:
        action = config.actions[name]
        if not action.enable:
            continue
        runs_on, unplaced = _runner_of(action, event.payload)
        commands.append(
            Command(
                command_id=records.command_id(
                    event.event_id, route.name, name, event.replay_id, event.position
                ),
                event_id=event.event_id,
                route=route.name,
                action=name,
                type=action.type,
                config_version=config.version,
                event=event.payload,
                event_ref=event.ref,
                issued_at=now,
                template=rendered[0],
                template_error=rendered[1] or unplaced,
                replay=event.replay_id is not None,
                replay_id=event.replay_id,
                dry_run=event.dry_run,
                runs_on=runs_on,
                received_at=event.received_at,
            )
        )
    return commands


def _runner_of(action: Action, payload: dict[str, Any]) -> tuple[str | None, str | None]:
    """(the runner of the action's `runs-on`, or why the event names none). A runner named
    by the event (`runs-on: event.input.<path>`, e.g. the node an alert came from) must be
    a valid runner name; otherwise the command fails in a worker and runs nowhere."""
    if action.runs_on is None or not action.runs_on.startswith("event.input."):
        return action.runs_on, None
    name = substitute(action.runs_on, payload).text
    if RUNNER_NAME.fullmatch(name):
        return name, None
    return None, f"runs-on '{action.runs_on}': the event names no runner (got {name[:100]!r})"


def _chained(chain: list[Command], route: Route) -> Command:
    """The first command, naming the others in order, each with its `on` condition."""
    first, *rest = chain
    steps = (
        ChainStep(
            c.command_id,
            c.action,
            c.type,
            c.runs_on,
            c.template_error,
            on=_condition(route.conditions.get(c.action, "always")),
        )
        for c in rest
    )
    return replace(first, then=tuple(steps))


def _condition(on: str) -> Literal["success", "failure", "always"]:
    return "success" if on == "success" else "failure" if on == "failure" else "always"
