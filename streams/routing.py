"""The routing decision for one event: which routes match, which commands to issue.

Pure: no Kafka, no Faust. The router agent decodes a record, calls `decide`, and sends
what it returns. Keeping it pure is what makes replaying an event give the same commands.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from streams import records
from streams.config import PosteeConfig, Route
from streams.records import Command, CommandRef, IncomingEvent, Routed
from streams.rules import RouteMatcher
from streams.templates import TemplateError, TemplateRenderer

__all__ = ["Decision", "decide"]


@dataclass(frozen=True)
class Decision:
    routed: Routed
    #: Commands to send now. A serialized route contributes only its first command; the
    #: rest ride in that command's `then` and are issued by the executor, one by one.
    commands: tuple[Command, ...]


def decide(
    event: IncomingEvent,
    config: PosteeConfig,
    matcher: RouteMatcher,
    renderer: TemplateRenderer | None = None,
) -> Decision:
    """Evaluate every route once (one engine call) and build the commands.

    Raises `rules.RuleEvaluationError` when the engine cannot evaluate the event.
    """
    matched = matcher.evaluate(event.payload, only=event.only_route)
    routes = [r for r in config.routes if r.name in matched]
    now = records.utc_now()
    commands: list[Command] = []
    refs: list[CommandRef] = []
    skipped: list[dict[str, str]] = []
    for route in routes:
        chain = _route_commands(event, route, config, now, _render(route, event, renderer))
        for name in route.actions:
            action = config.actions[name]
            if not action.enable:
                skipped.append({"route": route.name, "reason": f"action '{name}' is not enabled"})
        if not chain:
            continue
        refs.extend(
            CommandRef(
                c.command_id, c.route, c.action, c.type, queued=route.serialize_actions and i > 0
            )
            for i, c in enumerate(chain)
        )
        if route.serialize_actions:
            commands.append(_chained(chain))
        else:
            commands.extend(chain)
    routed = Routed(
        event_id=event.event_id,
        source=event.source,
        routes=[r.name for r in routes],
        commands=refs,
        skipped=skipped,
        at=now,
        replay_id=event.replay_id,
    )
    return Decision(routed=routed, commands=tuple(commands))


def _render(
    route: Route, event: IncomingEvent, renderer: TemplateRenderer | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The route's rendered template, or why it could not render (once per route)."""
    if route.template is None:
        return None, None
    if renderer is None:
        return None, f"template '{route.template}': no templates were compiled"
    try:
        return dict(renderer.render(route.template, event.payload).as_dict()), None
    except TemplateError as exc:
        return None, str(exc)


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
        commands.append(
            Command(
                command_id=records.command_id(event.event_id, route.name, name, event.replay_id),
                event_id=event.event_id,
                route=route.name,
                action=name,
                type=action.type,
                params=dict(action.params),
                event=event.payload,
                issued_at=now,
                template=rendered[0],
                template_error=rendered[1],
                replay=event.replay_id is not None,
                replay_id=event.replay_id,
                dry_run=event.dry_run,
            )
        )
    return commands


def _chained(chain: list[Command]) -> Command:
    """The first command, carrying the others in order."""
    first, *rest = chain
    return replace(first, then=tuple(rest))
