"""opsgenie: an alert through the Alert API v2 (upstream keys: `token`, `user`,
`assignee` (responders), `recipients` (visible to), `tags`, `priority` (`P1`..`P5`,
default P3; `priority-alias` is read too), `alias`, `entity`).

`POST https://api.opsgenie.com/v2/alerts` (`url` overrides the base, e.g. the EU one)
with `Authorization: GenieKey <token>`. As upstream, a description that is a JSON object
may carry `description`, `alias`, `entity`, `priority` and `tags` for this alert. The
alias is Opsgenie's deduplication key: without one, it is derived from the route's
dedupe key, else from the command id, so a retry never opens a second alert. Opsgenie
answers 202 (the request is processed asynchronously); 422 names what it refused.
"""

from __future__ import annotations

import hashlib
from typing import Any

from actions.base import ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier, param_list

__all__ = ["OpsgenieAction"]

API_URL = "https://api.opsgenie.com"
MESSAGE_CHARS = 130
DESCRIPTION_CHARS = 15_000
ALIAS_CHARS = 512


class OpsgenieAction(HttpNotifier):
    type = "opsgenie"

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        return {"method": "POST", "url": _url(request), "alert": alert(request)}

    async def deliver(self, request: ActionRequest) -> ActionResult:
        body = alert(request)
        reply = await self.call(
            request,
            "POST",
            _url(request),
            json_body=body,
            headers={"Authorization": f"GenieKey {request.params.get('token', '')}"},
        )
        answer = reply.json() if reply.ok else None
        detail = {"url": _url(request), "alias": body["alias"]}
        if isinstance(answer, dict) and answer.get("requestId"):
            detail["request_id"] = answer["requestId"]
        return self.result(reply, "Opsgenie", detail)


def _url(request: ActionRequest) -> str:
    return str(request.params.get("url") or API_URL).rstrip("/") + "/v2/alerts"


def alert(request: ActionRequest) -> dict[str, Any]:
    params = request.params
    template = request.template or {}
    given = shape.parse_json(request.event_text)
    content = (
        given if isinstance(given, dict) else {"description": shape.to_text(request.event_text)}
    )
    alias = content.get("alias") or params.get("alias") or _alias(request)
    priority = content.get("priority") or params.get("priority") or params.get("priority-alias")
    body: dict[str, Any] = {
        "message": " ".join(str(template.get("title") or "Postee alert").split())[:MESSAGE_CHARS],
        "description": str(content.get("description") or "")[:DESCRIPTION_CHARS],
        "alias": str(alias)[:ALIAS_CHARS],
        "priority": str(priority or "P3").upper(),
        "tags": param_list(params.get("tags")) + param_list(content.get("tags")),
        "source": "Postee Streams",
        "details": {"event_id": request.event_id},
    }
    entity = content.get("entity") or params.get("entity")
    if entity:
        body["entity"] = str(entity)
    if params.get("user"):
        body["user"] = str(params["user"])
    for key, users in (("responders", "assignee"), ("visibleTo", "recipients")):
        names = param_list(params.get(users))
        if names:
            body[key] = [{"type": "user", "username": name} for name in names]
    return body


def _alias(request: ActionRequest) -> str:
    material = request.dedupe_key or request.command_id
    return "postee-" + hashlib.sha256(material.encode()).hexdigest()[:32]
