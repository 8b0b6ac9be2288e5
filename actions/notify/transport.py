"""The HTTP side of the notifiers: a pooled client (actions/httputil.py), and one
mapping of answers to results.

2xx is success; a connection failure, a timeout, 408, 429 (honouring `Retry-After`) and
5xx are temporary (`ActionTemporaryError`: the executor retries); a TLS verification
failure and any other status are final. Every request carries `Idempotency-Key: <command
id>` (the same on each attempt). An outcome keeps the status, a few response headers and
a bounded excerpt of the answer, never a request header (they hold the credentials).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    ActionTemporaryError,
)
from actions.httputil import HttpClient, Reply, retryable
from actions.httputil import json_body as json_body_bytes
from actions.notify import shape

__all__ = ["HttpNotifier", "Reply", "basic_auth", "masked_url", "param_list"]


class HttpNotifier(Action):
    """Base of the notifiers that speak HTTP. A subclass gives `describe` (the dry run)
    and `deliver` (the real thing), built from `call`, `require` and `result`."""

    timeout_s = 15.0
    max_attempts = 4  # `retries: 3` by default, as the http action
    concurrency = 8  # vendors' rate limits: fewer than the http action
    #: Shapes of a description (see `shape.detect`) this output renders well; `postee
    #: validate` warns when a route gives it a template of another shape.
    fits: ClassVar[frozenset[str]] = shape.ALL

    def __init__(self, *, max_response_bytes: int = 16 * 1024) -> None:
        self.max_response_bytes = max_response_bytes
        self._client = HttpClient(max_response_bytes)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def execute(self, request: ActionRequest) -> ActionResult:
        if request.dry_run:
            return ActionResult("dry_run", self.describe(request))
        return await self.deliver(request)

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        raise NotImplementedError

    async def deliver(self, request: ActionRequest) -> ActionResult:
        raise NotImplementedError

    async def call(
        self,
        request: ActionRequest,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        shown_url: str | None = None,
    ) -> Reply:
        """One request; transport failures raise, any answer is returned."""
        where = f"{method} {shown_url or url}"
        sent = {"Idempotency-Key": request.command_id, **(headers or {})}
        if json_body is not None:
            content = json_body_bytes(json_body)
            if not any(name.lower() == "content-type" for name in sent):
                sent["Content-Type"] = "application/json"
        return await self._client.exchange(
            method,
            url,
            headers=sent,
            body=content,
            timeout_s=request.timeout_s,
            verify=bool(request.params.get("tls-verify", True)),
            where=where,
        )

    @staticmethod
    def require(reply: Reply, what: str, detail: Mapping[str, Any] | None = None) -> None:
        """A step that must succeed before the next one: raise unless it did."""
        if reply.ok:
            return
        info = {**(detail or {}), **reply.detail()}
        if retryable(reply.status):
            raise ActionTemporaryError(
                reply.failure(what), retry_after_s=reply.retry_after_s, detail=info
            )
        raise ActionPermanentError(reply.failure(what), detail=info)

    @staticmethod
    def result(reply: Reply, what: str, detail: Mapping[str, Any]) -> ActionResult:
        """The last step's answer: succeeded on 2xx, retried when temporary, else failed."""
        info = {**detail, **reply.detail()}
        if reply.ok:
            return ActionResult("succeeded", info)
        if retryable(reply.status):
            raise ActionTemporaryError(
                reply.failure(what), retry_after_s=reply.retry_after_s, detail=info
            )
        return ActionResult("failed", info, reply.failure(what))


def masked_url(url: str) -> str:
    """A webhook URL whose path is its credential (Slack, Teams), as shown in outcomes."""
    parts = urlsplit(url)
    first = parts.path.strip("/").split("/")[0] if parts.path.strip("/") else ""
    return (
        f"{parts.scheme}://{parts.netloc}/{first}/…"
        if first
        else f"{parts.scheme}://{parts.netloc}/…"
    )


def param_list(value: object) -> list[str]:
    """A list key that upstream also takes as one comma-separated string."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def basic_auth(user: object, password: object) -> str:
    pair = f"{user or ''}:{password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")
