"""What an action agent will run: the action as its own config defines it, never what a
command record says.

A command topic is not a shell. Whoever can write to `<prefix>.actions.<type>` can at
most ask for an action that this worker's config already defines, for a route that
lists it, with an event as data: the script, URL, image, headers and secret references
all come from the loaded config. A command naming anything else is refused (a `failed`
outcome and a DLQ record), before any secret is resolved. The trust model and the Kafka
ACLs that enforce who may write where: docs/trust.md.
"""

from __future__ import annotations

from typing import Any

from streams.config import Action, PosteeConfig
from streams.records import Command

__all__ = ["configured_action", "version_note"]


def configured_action(
    config: PosteeConfig, kind: str, command: Command, runner: str | None = None
) -> tuple[Action | None, str | None]:
    """(the action to run, None) or (None, why the command is refused). `runner` is the
    name of the runner executing (None: a worker)."""
    action = config.actions.get(command.action)
    if runner is not None and (action is None or action.type != command.type):
        return None, (
            f"runner '{runner}' has no {command.type} action '{command.action}' in {config.file}"
        )
    if action is None:
        return (
            None,
            f"action '{command.action}' is not defined in this worker's config "
            f"({_versions(config, command)})",
        )
    if action.type != kind or command.type != kind:
        return None, (
            f"action '{command.action}' is of type '{action.type}', but the command came as "
            f"'{command.type}' on the {kind} command topic"
        )
    if not action.enable:
        return None, f"action '{command.action}' is not enabled in this worker's config"
    if runner is None and action.runs_on and command.template_error is None:
        return None, f"action '{command.action}' runs on a runner (runs-on: {action.runs_on})"
    # A config with no routes is a runner's: it holds only the actions it runs.
    if config.routes:
        route = config.route(command.route)
        if route is None:
            return (
                None,
                f"route '{command.route}' is not defined in this worker's config "
                f"({_versions(config, command)})",
            )
        if command.action not in route.actions:
            return None, f"route '{command.route}' does not list action '{command.action}'"
    return action, None


def _versions(config: PosteeConfig, command: Command) -> str:
    """Only built for a refusal: this check runs for every command."""
    return f"this worker runs config {config.version}, the command names {command.config_version}"


def version_note(config: PosteeConfig, command: Command) -> dict[str, Any]:
    """Outcome detail for a command issued under other rules than the ones it runs under
    (a reload between routing and execution): it runs the action as defined now."""
    if command.config_version == config.version:
        return {}
    return {
        "config_version": config.version,
        "issued_under_config_version": command.config_version,
    }
