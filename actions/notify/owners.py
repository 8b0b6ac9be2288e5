"""Postee's `<%application_scope_owner%>` recipient: the owners of the application scope
an Aqua event names (`application_scope_owners`), for email recipients and Jira
assignees; in an aggregated batch, the owners of every event."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actions.notify.transport import param_list

__all__ = ["OWNER_PLACEHOLDER", "recipients_of"]

OWNER_PLACEHOLDER = "<%application_scope_owner%>"


def recipients_of(params: Mapping[str, Any], event: Mapping[str, Any]) -> list[str]:
    """The configured addresses (a list, or one comma-separated string), with the owner
    placeholder expanded, in order, without repeats."""
    found: list[str] = []
    for recipient in param_list(params.get("recipients")):
        if recipient == OWNER_PLACEHOLDER:
            found += _owners(event)
        else:
            found.append(recipient)
    return list(dict.fromkeys(found))


def _owners(event: Mapping[str, Any]) -> list[str]:
    batch = event.get("events")
    events: list[Any] = batch if isinstance(batch, list) else [event]
    owners: list[str] = []
    for item in events:
        value = item.get("application_scope_owners") if isinstance(item, Mapping) else None
        owners += [str(o) for o in value] if isinstance(value, list) else []
    return owners
