"""splunk: an event to Splunk's HTTP Event Collector (upstream keys: `url`, `token`,
`size-limit` (default 10,000 bytes), `tls-verify`).

`POST <url>/services/collector/event` with `Authorization: Splunk <token>` and the HEC
event format `{"time", "host", "source", "sourcetype": "_json", "event"}`. The event is
the description when it is a JSON object (a raw-message template), else an object with
title and description. Above `size-limit`, the largest list values are emptied (upstream
drops resources, malware and sensitive data the same way), then the description is cut.
HEC answers `{"text": "Success", "code": 0}`; its 503 "server is busy" is retried.
"""

from __future__ import annotations

import json
import time
from typing import Any

from actions.base import ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier

__all__ = ["SplunkAction"]

DEFAULT_SIZE_LIMIT = 10_000
COLLECTOR_PATHS = ("/services/collector/event", "/services/collector")


class SplunkAction(HttpNotifier):
    type = "splunk"
    fits = frozenset({"json"})

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        body, notes = hec_event(request)
        return {"url": _endpoint(request), "request_bytes": len(body), "notes": notes}

    async def deliver(self, request: ActionRequest) -> ActionResult:
        body, notes = hec_event(request)
        reply = await self.call(
            request,
            "POST",
            _endpoint(request),
            content=body,
            headers={
                "Authorization": f"Splunk {request.params.get('token', '')}",
                "Content-Type": "application/json",
            },
        )
        detail: dict[str, Any] = {"url": _endpoint(request), "request_bytes": len(body)}
        if notes:
            detail["notes"] = notes
        return self.result(reply, "Splunk HEC", detail)


def _endpoint(request: ActionRequest) -> str:
    url = str(request.params.get("url", "")).rstrip("/")
    return url if url.endswith(COLLECTOR_PATHS) else url + COLLECTOR_PATHS[0]


def hec_event(request: ActionRequest) -> tuple[bytes, list[str]]:
    limit = int(request.params.get("size-limit") or DEFAULT_SIZE_LIMIT)
    value = shape.parse_json(request.event_text)
    template = request.template or {}
    event: dict[str, Any] = (
        dict(value)
        if isinstance(value, dict)
        else {"title": template.get("title"), "description": request.event_text}
    )
    event.setdefault("postee_event_id", request.event_id)
    notes: list[str] = []
    while len(_dump(event)) > limit:
        lists = [(len(_dump(v)), k) for k, v in event.items() if isinstance(v, list) and v]
        if lists:
            _, key = max(lists)
            event[key] = []
            notes.append(f"emptied {key!r} to fit size-limit {limit}")
            continue
        text = str(event.get("description") or "")
        over = len(_dump(event)) - limit
        if not text or over >= len(text):
            notes.append(f"event is {len(_dump(event))} bytes, over size-limit {limit}")
            break
        event["description"] = text[: len(text) - over - 20] + "…"
        notes.append(f"description cut to fit size-limit {limit}")
    envelope = {
        "time": round(time.time(), 3),
        "host": "postee-streams",
        "source": "postee",
        "sourcetype": "_json",
        "event": event,
    }
    return _dump(envelope), notes


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
