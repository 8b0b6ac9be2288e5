"""The interface every action type implements, and the errors actions raise.

    ActionError
    ├── ActionTemporaryError   worth another attempt (connection refused, 5xx, 409, 429...)
    └── ActionPermanentError   retrying cannot help (bad parameters, 4xx, missing image...)

An action turns one `ActionRequest` into one `ActionResult`. It never touches Kafka and
never imports `streams`: `streams.executor` builds the request from a command, applies the
outer timeout, counts attempts and publishes the outcome. A non-zero exit or a 4xx answer
is a *result* (`failed`), not an exception; exceptions are for "could not run at all".
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal, Self

__all__ = [
    "Action",
    "ActionError",
    "ActionPermanentError",
    "ActionRequest",
    "ActionResult",
    "ActionTemporaryError",
    "exit_result",
    "truncate",
]

ResultStatus = Literal["succeeded", "failed", "dry_run"]


class ActionError(Exception):
    """Root of the errors an action raises; `detail` goes into the attempt's outcome."""

    def __init__(self, message: str, *, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.detail = dict(detail or {})


class ActionTemporaryError(ActionError):
    """The action could not run now; the executor retries after a backoff."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, detail=detail)
        self.retry_after_s = retry_after_s


class ActionPermanentError(ActionError):
    """The action cannot succeed with these parameters; no retry."""


@dataclass(frozen=True)
class ActionRequest:
    """Everything an action needs for one attempt of one command."""

    command_id: str
    event_id: str
    action: str  #: the action's name in the config
    params: Mapping[str, Any]  #: the action's config keys
    event: Mapping[str, Any]  #: the event object
    event_text: str  #: POSTEE_EVENT: the rendered description, or the event as JSON
    template: Mapping[str, Any] | None = None  #: rendered title, description, url
    dry_run: bool = False
    attempt: int = 1
    timeout_s: float = (
        60.0  #: this attempt's time bound (the action's `timeout` key, or the default)
    )
    #: The route's dedupe key (`unique-message-props`), when it has one: what lets a
    #: ticketing output update the ticket of an earlier event instead of opening another.
    dedupe_key: str | None = None


@dataclass(frozen=True)
class ActionResult:
    status: ResultStatus
    detail: Mapping[str, Any] = field(default_factory=dict)  #: type-specific, JSON-ready
    error: str | None = None


class Action:
    """Base class: one instance per action type per worker, shared by all commands."""

    type: ClassVar[str]
    #: Default bound of one attempt; a per-action `timeout` key overrides it.
    timeout_s: float = 60.0
    #: Attempts in all when the action raises `ActionTemporaryError` (`retries` + 1).
    max_attempts: int = 3
    #: Commands of one action run at most this many at a time (a `concurrency` key on the
    #: action overrides it); each action has its own slots (streams/lanes.py).
    concurrency: int = 4

    async def execute(self, request: ActionRequest) -> ActionResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release long-lived clients (HTTP pools, engine handles)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: builtins.type[BaseException] | None,  # `type` is the action type here
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def exit_result(
    detail: Mapping[str, Any], exit_code: int | None, timeout_note: str | None, subject: str
) -> ActionResult:
    """The result of a finished process or container: failed when it was killed at its
    timeout or exited non-zero (a result, not an error: it is not retried)."""
    if timeout_note:
        return ActionResult("failed", detail, timeout_note)
    if exit_code != 0:
        return ActionResult("failed", detail, f"{subject} exited with code {exit_code}")
    return ActionResult("succeeded", detail)


def truncate(data: bytes, limit: int) -> tuple[str, bool]:
    """Decode at most `limit` bytes for an outcome record; say whether something was cut."""
    cut = len(data) > limit
    return data[:limit].decode("utf-8", errors="replace"), cut
