"""What every action that speaks HTTP shares: which failures are worth another attempt,
how long a server asks us to wait, and a bounded read of its answer."""

from __future__ import annotations

import email.utils
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import httpx

from actions.base import ActionError, ActionPermanentError, ActionTemporaryError, truncate

__all__ = [
    "KEPT_HEADERS",
    "MAX_RETRY_AFTER_S",
    "RETRYABLE_STATUS",
    "ClientPool",
    "caused_by_tls",
    "read_excerpt",
    "retry_after_s",
    "retryable",
    "transport_error",
]

MAX_RETRY_AFTER_S = 300.0
#: Response headers worth keeping in the outcome.
KEPT_HEADERS = ("content-type", "content-length", "location", "retry-after", "date", "server")
RETRYABLE_STATUS = frozenset({408, 429})


class ClientPool:
    """Pooled httpx clients, one per TLS-verification choice (httpx sets it per client)."""

    def __init__(self) -> None:
        # httpx logs every request's URL at INFO (httpcore more at DEBUG); URLs may carry
        # secrets or event data, so keep both quiet.
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._clients: dict[bool, httpx.AsyncClient] = {}

    def get(self, verify: bool) -> httpx.AsyncClient:
        if verify not in self._clients:
            self._clients[verify] = httpx.AsyncClient(verify=verify, trust_env=False)
        return self._clients[verify]

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def retryable(status: int) -> bool:
    """408, 429 and 5xx: the server may well accept the same request later."""
    return status >= 500 or status in RETRYABLE_STATUS


def caused_by_tls(exc: BaseException) -> bool:
    """Whether an SSL error is somewhere in the exception's chain (httpx wraps httpcore's)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after_s(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (a number or an HTTP date), bounded; None when absent."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        seconds = float(value.strip())
    else:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) or None


async def read_excerpt(response: httpx.Response, limit: int) -> tuple[str, bool]:
    """At most `limit` bytes of the body; the rest is not even downloaded."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) > limit:
            break
    return truncate(kept, limit)


def transport_error(
    exc: httpx.TransportError,
    timeout_s: float,
    where: str = "",
    detail: Mapping[str, Any] | None = None,
) -> ActionError:
    """What a failure to exchange a request means: a certificate that does not verify
    will not verify on retry either; a timeout or a connection failure may pass."""
    prefix = f"{where}: " if where else ""
    if isinstance(exc, httpx.TimeoutException):
        return ActionTemporaryError(
            f"{prefix}timed out after {timeout_s:g}s: {type(exc).__name__}", detail=detail
        )
    if isinstance(exc, httpx.ConnectError) and caused_by_tls(exc):
        return ActionPermanentError(f"{prefix}TLS verification failed: {exc}", detail=detail)
    return ActionTemporaryError(
        f"{prefix}connection failed: {type(exc).__name__}: {exc}", detail=detail
    )
