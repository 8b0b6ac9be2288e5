"""Slack incoming webhooks (api.slack.com/messaging/webhooks, /reference/block-kit):
`POST /services/T…/B…/<secret>`, JSON with `text` and/or `blocks`; at most 50 blocks;
a section's text at most 3,000 characters, a header's plain text at most 150. Answers
`200 ok`, `400 invalid_payload | no_text | invalid_blocks`, `404 no_service`, and (when
scripted) `429 rate_limited` with `Retry-After`."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.vendors.base import Answer, VendorServer, json_body

PATH = re.compile(r"^/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+$")
BLOCK_TYPES = {"section", "header", "divider", "context", "actions", "image", "rich_text"}
RATE_LIMITED = Answer(429, "rate_limited", {"Retry-After": "1"})


class SlackServer(VendorServer):
    def setup(self, app: web.Application) -> None:
        app.router.add_post("/services/{rest:.*}", self.webhook)

    def url(self, channel: str = "C1") -> str:
        return f"{self.base_url}/services/T0001/B{channel.upper()}/xoxsecret{channel}"

    async def webhook(self, request: web.Request) -> web.Response:
        if not PATH.match(request.path):
            return self.refuse(f"bad webhook path {request.path}", Answer(404, "no_service"))
        message = await json_body(request)
        if not isinstance(message, dict):
            return self.refuse("body is not a JSON object", Answer(400, "invalid_payload"))
        if not message.get("text") and not message.get("blocks"):
            return self.refuse("neither text nor blocks", Answer(400, "no_text"))
        problem = block_problem(message.get("blocks", []))
        if problem:
            return self.refuse(problem, Answer(400, "invalid_blocks"))
        return web.Response(text="ok", content_type="text/html")


def block_problem(blocks: Any) -> str | None:
    if not isinstance(blocks, list) or len(blocks) > 50:
        return f"blocks must be a list of at most 50, got {type(blocks).__name__} {len(blocks)}"
    for i, block in enumerate(blocks):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind not in BLOCK_TYPES:
            return f"block {i}: unknown type {kind!r}"
        text = block.get("text")
        if kind == "header":
            if not isinstance(text, dict) or text.get("type") != "plain_text":
                return f"block {i}: a header needs plain_text"
            if not 0 < len(text.get("text", "")) <= 150:
                return f"block {i}: header text of {len(text.get('text', ''))} characters"
        if kind == "section":
            if text is None and not block.get("fields"):
                return f"block {i}: a section needs text or fields"
            if text is not None:
                if text.get("type") not in ("mrkdwn", "plain_text"):
                    return f"block {i}: text type {text.get('type')!r}"
                if not 0 < len(text.get("text", "")) <= 3000:
                    return f"block {i}: section text of {len(text.get('text', ''))} characters"
    return None
