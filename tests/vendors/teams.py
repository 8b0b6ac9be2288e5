"""Microsoft Teams webhooks. Workflows (Power Automate, learn.microsoft.com "Create
incoming webhooks with Workflows"): `POST`, JSON `{"type": "message", "attachments":
[{"contentType": "application/vnd.microsoft.card.adaptive", "content": <AdaptiveCard>}]}`,
at most about 28 KB; answers `202 Accepted` with an empty body. The retired Office 365
connectors (`/webhookb2/…`) take the same and answer `200` with `1`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.vendors.base import Answer, VendorServer, json_body

CARD = "application/vnd.microsoft.card.adaptive"
MAX_BYTES = 28 * 1024
BAD_REQUEST = Answer(400, {"error": {"code": "InvalidRequestContent", "message": "bad card"}})


class TeamsServer(VendorServer):
    def setup(self, app: web.Application) -> None:
        app.router.add_post("/workflows/{rest:.*}", self.workflow)
        app.router.add_post("/webhookb2/{rest:.*}", self.connector)

    def workflow_url(self) -> str:
        return f"{self.base_url}/workflows/a1b2c3/triggers/manual/paths/invoke?sig=s3cr3t"

    def connector_url(self) -> str:
        return f"{self.base_url}/webhookb2/abc@tenant/IncomingWebhook/d4e5/f6"

    async def workflow(self, request: web.Request) -> web.Response:
        problem = await card_problem(request)
        if problem:
            return self.refuse(problem, BAD_REQUEST)
        return web.Response(status=202)

    async def connector(self, request: web.Request) -> web.Response:
        problem = await card_problem(request)
        if problem:
            return self.refuse(problem, Answer(400, "Summary or Text is required."))
        return web.Response(text="1")


async def card_problem(request: web.Request) -> str | None:
    if len(await request.read()) > MAX_BYTES:
        return "message larger than 28 KB"
    message: Any = await json_body(request)
    if not isinstance(message, dict) or message.get("type") != "message":
        return "not a message"
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return "no attachments"
    for attachment in attachments:
        if attachment.get("contentType") != CARD:
            return f"attachment contentType {attachment.get('contentType')!r}"
        card = attachment.get("content") or {}
        if card.get("type") != "AdaptiveCard" or not isinstance(card.get("version"), str):
            return "content is not an AdaptiveCard with a version"
        body = card.get("body")
        if not isinstance(body, list) or not all(
            isinstance(e, dict) and e.get("type") for e in body
        ):
            return "card body must be a list of typed elements"
    return None
