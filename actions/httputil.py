"""What every action that speaks HTTP shares: one pooled client, which failures are worth
another attempt, how long a server asks us to wait, and a bounded read of its answer.

The client is aiohttp's: on this project's hot path (an http action per event) httpx
spent ~3 ms of CPU per request against aiohttp's ~0.3 ms, measured on this machine with
`bench/http_clients.py`, and the event loop is shared with everything else the worker does.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy

from actions.base import ActionError, ActionPermanentError, ActionTemporaryError, truncate

__all__ = [
    "KEPT_HEADERS",
    "MAX_RETRY_AFTER_S",
    "RETRYABLE_STATUS",
    "HttpClient",
    "Reply",
    "caused_by_tls",
    "exchange_error",
    "json_body",
    "read_excerpt",
    "retry_after_s",
    "retryable",
]

MAX_RETRY_AFTER_S = 300.0
#: Response headers worth keeping in the outcome.
KEPT_HEADERS = ("content-type", "content-length", "location", "retry-after", "date", "server")
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "postee-streams"
MAX_REDIRECTS = 10
#: Characters of a server's error answer quoted in an outcome's error text.
ERROR_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class Reply:
    """A server's answer, as an outcome may keep it: the body is bounded, and the header
    names are lower case (a repeated header's values joined by ", ")."""

    status: int
    reason: str
    headers: Mapping[str, str]
    text: str  #: the body, bounded
    truncated: bool
    elapsed_ms: float
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON, or None when it is not (or was cut)."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def detail(self) -> dict[str, Any]:
        return {
            "status_code": self.status,
            "response_headers": {k: v for k, v in self.headers.items() if k in KEPT_HEADERS},
            "response_excerpt": self.text,
            "response_truncated": self.truncated,
            "elapsed_ms": self.elapsed_ms,
        }

    def failure(self, what: str) -> str:
        said = " ".join(self.text.split())[:ERROR_EXCERPT_CHARS]
        return f"{what}: HTTP {self.status} {self.reason}".strip() + (f": {said}" if said else "")


class HttpClient:
    """One aiohttp session (and so one connection pool) for an action's lifetime, made on
    first use (a session belongs to the running loop). It keeps no cookies: one
    command's server must not see what another's set. Nothing here logs a URL (they may
    carry credentials or event data)."""

    def __init__(self, max_response_bytes: int) -> None:
        self.max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                # Only what the caller gives: no Content-Type guessed for a bytes body.
                skip_auto_headers=("Content-Type",),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def exchange(
        self,
        method: str,
        url: str,
        *,
        headers: Iterable[tuple[str, str]] | Mapping[str, str],
        body: bytes | None,
        timeout_s: float,
        verify: bool = True,
        follow_redirects: bool = False,
        where: str = "",
        detail: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One request, its whole exchange bounded by `timeout_s`. Any answer is returned;
        a failure to exchange raises what it means (see `exchange_error`)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        started = time.monotonic()
        try:
            async with self._open().request(
                method,
                url,
                headers=CIMultiDict(items),
                data=body or None,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                ssl=verify,
                allow_redirects=follow_redirects,
                max_redirects=MAX_REDIRECTS,
            ) as response:
                text, cut = await read_excerpt(response.content.iter_any(), self.max_response_bytes)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise exchange_error(exc, timeout_s, where, detail) from None
        answered = _lower_case(response.headers)
        return Reply(
            status=response.status,
            reason=response.reason or "",
            headers=answered,
            text=text,
            truncated=cut,
            elapsed_ms=round((time.monotonic() - started) * 1000, 3),
            retry_after_s=retry_after_s(answered),
        )


def _lower_case(headers: CIMultiDictProxy[str]) -> dict[str, str]:
    joined: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


def json_body(value: Any) -> bytes:
    """A JSON request body, compact and UTF-8 (what httpx's `json=` sent before)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def retryable(status: int) -> bool:
    """408, 429 and 5xx: the server may well accept the same request later."""
    return status >= 500 or status in RETRYABLE_STATUS


def caused_by_tls(exc: BaseException) -> bool:
    """Whether an SSL error is somewhere in the exception's chain (aiohttp may wrap it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """`Retry-After` (lower-case headers) in seconds, a number or an HTTP date, bounded;
    None when absent."""
    value = headers.get("retry-after")
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


async def read_excerpt(chunks: AsyncIterator[bytes], limit: int) -> tuple[str, bool]:
    """At most `limit` bytes of a body; the rest is not even downloaded."""
    kept = b""
    async for chunk in chunks:
        kept += chunk
        if len(kept) > limit:
            break
    return truncate(kept, limit)


def exchange_error(
    exc: BaseException,
    timeout_s: float,
    where: str = "",
    detail: Mapping[str, Any] | None = None,
) -> ActionError:
    """What a failure to exchange a request means: a certificate that does not verify,
    a URL that does not parse or endless redirects will not pass on retry; a timeout or
    a connection failure may."""
    prefix = f"{where}: " if where else ""
    if isinstance(exc, TimeoutError):
        return ActionTemporaryError(
            f"{prefix}timed out after {timeout_s:g}s: {type(exc).__name__}", detail=detail
        )
    if isinstance(exc, aiohttp.ClientSSLError) or caused_by_tls(exc):
        return ActionPermanentError(f"{prefix}TLS verification failed: {exc}", detail=detail)
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return ActionPermanentError(f"{prefix}invalid URL: {exc}", detail=detail)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ActionPermanentError(
            f"{prefix}gave up after {MAX_REDIRECTS} redirects", detail=detail
        )
    return ActionTemporaryError(
        f"{prefix}connection failed: {type(exc).__name__}: {exc}", detail=detail
    )
