"""http: call a remote server with the event at hand (Postee's HTTP action).

Keys: `url`, `method`, `headers` (name → list of values), `timeout` (default 5 s),
`body-file` (read when the command runs: the seed's exec-then-http scenario writes it just
before) or `body-content`; `event.input.<path>` tokens work in `body-content`, `url` and
header values. Beyond upstream: `tls-verify` (default true), `follow-redirects` (default
false), `retries` and `retry-backoff` (applied by the executor).

Every request carries `Idempotency-Key: <command id>` and, as upstream,
`Postee-Event: base64(description)` unless that would exceed a common 8 KiB header limit.
2xx succeeds; connection errors, timeouts, 408, 429 and 5xx are temporary (retried,
honouring `Retry-After`); any other status is a final `failed` result.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    ActionTemporaryError,
)
from actions.httputil import HttpClient, Reply, retryable
from actions.substitution import substitute

__all__ = ["HttpAction"]

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
MAX_POSTEE_EVENT_HEADER_BYTES = 8 * 1024
MAX_BODY_FILE_BYTES = 10 * 1024 * 1024


class HttpAction(Action):
    type = "http"
    timeout_s = 5.0
    max_attempts = 4  # upstream's default of no retries, plus `retries: 3` by default
    concurrency = 16  # requests mostly wait on the network

    def __init__(self, *, max_response_bytes: int = 16 * 1024) -> None:
        self.max_response_bytes = max_response_bytes
        self._client = HttpClient(max_response_bytes)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def execute(self, request: ActionRequest) -> ActionResult:
        call = _prepare(request)
        if request.dry_run:
            return ActionResult(
                "dry_run",
                {**call.summary(), "body_excerpt": call.body[:2048].decode(errors="replace")},
            )
        reply = await self._client.exchange(
            call.method,
            call.url,
            headers=call.headers,
            body=call.body,
            timeout_s=request.timeout_s,
            verify=bool(request.params.get("tls-verify", True)),
            follow_redirects=bool(request.params.get("follow-redirects", False)),
            detail=call.summary(),
        )
        return _judge(reply, {**call.summary(), **reply.detail()})


class _Call:
    def __init__(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        notes: list[str],
        unresolved: list[str],
    ) -> None:
        self.method, self.url, self.headers, self.body = method, url, headers, body
        self.notes, self.unresolved = notes, unresolved

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "method": self.method,
            "url": self.url,
            "request_bytes": len(self.body),
        }
        if self.notes:
            summary["notes"] = self.notes
        if self.unresolved:
            summary["unresolved_tokens"] = self.unresolved
        return summary


def _prepare(request: ActionRequest) -> _Call:
    params, event = request.params, request.event
    method = str(params.get("method") or "POST").upper()
    if method not in METHODS:
        raise ActionPermanentError(f"unsupported HTTP method {method!r}")
    url = substitute(str(params.get("url") or ""), event, lambda v: quote(v, safe=""))
    if not url.text.startswith(("http://", "https://")):
        raise ActionPermanentError(f"url must be http(s): {url.text!r}")
    unresolved, notes = list(url.unresolved), []
    headers = [("Idempotency-Key", request.command_id)]
    for name, values in _header_items(params.get("headers")):
        for raw in values:
            value = substitute(str(raw), event)
            if "\r" in value.text or "\n" in value.text:
                raise ActionPermanentError(f"header {name!r} would contain a line break")
            headers.append((name, value.text))
            unresolved += value.unresolved
    encoded = base64.b64encode(request.event_text.encode("utf-8")).decode()
    if len(encoded) <= MAX_POSTEE_EVENT_HEADER_BYTES:
        headers.append(("Postee-Event", encoded))
    else:
        notes.append(
            f"Postee-Event header left out: {len(encoded)} bytes"
            f" exceed {MAX_POSTEE_EVENT_HEADER_BYTES}"
        )
    body, body_unresolved = _body(params, event)
    return _Call(method, url.text, headers, body, notes, unresolved + body_unresolved)


def _header_items(headers: object) -> list[tuple[str, list[Any]]]:
    if not isinstance(headers, Mapping):
        return []
    return [(str(k), v if isinstance(v, list) else [v]) for k, v in headers.items()]


def _body(params: Mapping[str, Any], event: Mapping[str, Any]) -> tuple[bytes, list[str]]:
    if params.get("body-file"):
        path = Path(str(params["body-file"]))
        try:
            size = path.stat().st_size
            if size > MAX_BODY_FILE_BYTES:
                raise ActionPermanentError(
                    f"body-file {path} is {size} bytes, over {MAX_BODY_FILE_BYTES}"
                )
            return path.read_bytes(), []
        except OSError as exc:
            raise ActionPermanentError(f"body-file {path}: {exc.strerror or exc}") from None
    if params.get("body-content"):
        content = substitute(str(params["body-content"]), event)
        return content.text.encode("utf-8"), content.unresolved
    return b"", []


def _judge(reply: Reply, detail: dict[str, Any]) -> ActionResult:
    if reply.ok:
        return ActionResult("succeeded", detail)
    reason = f"HTTP {reply.status} {reply.reason}".strip()
    if retryable(reply.status):
        raise ActionTemporaryError(reason, retry_after_s=reply.retry_after_s, detail=detail)
    return ActionResult("failed", detail, reason)
