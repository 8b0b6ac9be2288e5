"""webhook: POST the rendered description to a URL (upstream keys: `url`, `timeout`,
default 120 s, a Go duration). Any 2xx succeeds (upstream: only 200). The body is the
description as it is: `application/json` when it is JSON, else `text/plain`."""

from __future__ import annotations

from typing import Any

from actions.base import ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier

__all__ = ["WebhookAction"]


class WebhookAction(HttpNotifier):
    type = "webhook"
    timeout_s = 120.0

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        body, kind = _body(request)
        return {
            "method": "POST",
            "url": str(request.params.get("url", "")),
            "content_type": kind,
            "request_bytes": len(body),
            "body_excerpt": body[:2048].decode(errors="replace"),
        }

    async def deliver(self, request: ActionRequest) -> ActionResult:
        url = str(request.params.get("url", ""))
        body, kind = _body(request)
        reply = await self.call(
            request,
            "POST",
            url,
            content=body,
            headers={"Content-Type": kind, "Postee-Event-Id": request.event_id},
        )
        detail = {"method": "POST", "url": url, "request_bytes": len(body)}
        return self.result(reply, "webhook", detail)


def _body(request: ActionRequest) -> tuple[bytes, str]:
    text = request.event_text
    is_json = shape.parse_json(text) is not None
    kind = "application/json" if is_json else "text/plain; charset=utf-8"
    return text.encode("utf-8"), kind
