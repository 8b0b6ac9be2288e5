"""teams: an Adaptive Card to a Microsoft Teams webhook (upstream key: `url`).

Workflows (Power Automate) webhooks, which replaced the Office 365 connectors, take only
an Adaptive Card wrapped as `{"type": "message", "attachments": [{"contentType":
"application/vnd.microsoft.card.adaptive", "content": card}]}` and answer 202; the
retired connector URLs (`…webhook.office.com/webhookb2/…`) take the same envelope and
answer 200 with `1`. Any 2xx succeeds, except a connector's 200 whose body reports an
error (throttling comes back that way: then it is retried). An Adaptive Card template
is sent as it is; other shapes become a title and a body text block (HTML is turned into
Markdown-ish text, which cards render). Teams refuses messages above about 28 KB: the
body is cut to fit, with a note in the outcome. The URL is the credential: outcomes show
only its host and first path segment.
"""

from __future__ import annotations

import json
from typing import Any

from actions.base import ActionRequest, ActionResult, ActionTemporaryError
from actions.notify import shape
from actions.notify.transport import HttpNotifier, masked_url

__all__ = ["TeamsAction"]

MAX_PAYLOAD_BYTES = 28 * 1024
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CONNECTOR_MARKERS = ("/webhookb2/", "/IncomingWebhook/", "outlook.office.com/webhook")


class TeamsAction(HttpNotifier):
    type = "teams"
    fits = frozenset({"card", "html", "text"})

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        payload, notes = message_for(request)
        return {
            "url": masked_url(str(request.params.get("url", ""))),
            "request_bytes": len(json.dumps(payload).encode()),
            "message": payload,
            **({"notes": notes} if notes else {}),
        }

    async def deliver(self, request: ActionRequest) -> ActionResult:
        url = str(request.params.get("url", ""))
        payload, notes = message_for(request)
        shown = masked_url(url)
        reply = await self.call(request, "POST", url, json_body=payload, shown_url=shown)
        detail: dict[str, Any] = {"url": shown, "connector": _is_connector(url)}
        if notes:
            detail["notes"] = notes
        result = self.result(reply, "Teams", detail)
        said = reply.text.strip()
        if result.status == "succeeded" and _is_connector(url) and said not in ("", "1"):
            if "429" in said:
                raise ActionTemporaryError(
                    f"Teams connector throttled: {said[:300]}", detail=detail
                )
            return ActionResult("failed", result.detail, f"Teams connector refused: {said[:300]}")
        return result


def _is_connector(url: str) -> bool:
    return any(marker in url for marker in CONNECTOR_MARKERS)


def message_for(request: ActionRequest) -> tuple[dict[str, Any], list[str]]:
    template = request.template or {}
    title = str(template.get("title") or "Postee notification")
    description = request.event_text
    notes: list[str] = []
    card = shape.parse_json(description) if shape.detect(description) == "card" else None
    if card is None:
        kind = shape.detect(description)
        if kind not in TeamsAction.fits:
            notes.append(f"the template gives {kind}, not an Adaptive Card or HTML: sent as text")
        text = shape.to_text(description)
        card = _card(title, text, template.get("url"))
        size = len(json.dumps(_envelope(card)).encode())
        if size > MAX_PAYLOAD_BYTES:
            keep = max(0, len(text) - (size - MAX_PAYLOAD_BYTES) - 200)
            notes.append(f"body cut from {len(text)} to {keep} characters to fit Teams' limit")
            card = _card(
                title, text[:keep] + "\n\n… (cut to fit Teams' size limit)", template.get("url")
            )
    return _envelope(card), notes


def _card(title: str, text: str, link: object) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": title, "wrap": True, "size": "Large", "weight": "Bolder"},
            {"type": "TextBlock", "text": text, "wrap": True},
        ],
    }
    if isinstance(link, str) and link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "More details", "url": link}]
    return card


def _envelope(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }
