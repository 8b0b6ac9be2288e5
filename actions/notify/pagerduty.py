"""pagerDuty: a trigger event through the Events API v2 (upstream keys:
`pagerduty-routing-key`, and `pagerduty-auth-token`, which upstream requires but the
Events API does not use).

`POST https://events.pagerduty.com/v2/enqueue` (`url` overrides it) with
`{"routing_key", "event_action": "trigger", "dedup_key", "payload": {"summary",
"source", "severity", "timestamp", "custom_details"}}`. The `dedup_key` is derived from
the route's dedupe key when it has `unique-message-props` (PagerDuty then folds repeats
into one incident), else it is the command id (a retried attempt does not open a second
incident). `severity` defaults to `critical`, as upstream. PagerDuty answers 202.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from actions.base import ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier

__all__ = ["PagerDutyAction", "dedup_key"]

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_CHARS = 1024


def dedup_key(request: ActionRequest) -> str:
    if request.dedupe_key:
        return "postee-" + hashlib.sha256(request.dedupe_key.encode()).hexdigest()[:32]
    return f"postee-{request.command_id}"


class PagerDutyAction(HttpNotifier):
    type = "pagerduty"

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        event = pagerduty_event(request)
        event["routing_key"] = "[routing key]"
        return {"method": "POST", "url": _url(request), "event": event}

    async def deliver(self, request: ActionRequest) -> ActionResult:
        event = pagerduty_event(request)
        reply = await self.call(request, "POST", _url(request), json_body=event)
        detail = {"url": _url(request), "dedup_key": event["dedup_key"]}
        return self.result(reply, "PagerDuty", detail)


def _url(request: ActionRequest) -> str:
    return str(request.params.get("url") or EVENTS_URL)


def pagerduty_event(request: ActionRequest) -> dict[str, Any]:
    template = request.template or {}
    summary = " ".join(str(template.get("title") or "Postee alert").split())[:SUMMARY_CHARS]
    event: dict[str, Any] = {
        "routing_key": str(request.params.get("pagerduty-routing-key", "")),
        "event_action": "trigger",
        "dedup_key": dedup_key(request),
        "client": "Postee Streams",
        "payload": {
            "summary": summary,
            "source": "postee-streams",
            "severity": str(request.params.get("severity") or "critical"),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "custom_details": {
                "description": shape.to_text(request.event_text),
                "event_id": request.event_id,
            },
        },
    }
    if template.get("url"):
        event["links"] = [{"href": str(template["url"]), "text": "More details"}]
    return event
