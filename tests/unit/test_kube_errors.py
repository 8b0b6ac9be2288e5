"""How the kubernetes action reads the API server's refusals: final, or worth a retry."""

from __future__ import annotations

import json

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from actions.kube_cluster import CallFailed


def api_error(status: int, reason: str, headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps(
        {"kind": "Status", "status": "Failure", "reason": reason, "message": f"{reason} here"}
    )
    exc.headers = headers
    return exc


@pytest.mark.parametrize(
    ("status", "reason", "temporary"),
    [
        (400, "BadRequest", False),
        (401, "Unauthorized", False),
        (403, "Forbidden", False),
        (404, "NotFound", False),
        (422, "Invalid", False),
        (409, "Conflict", True),
        (429, "TooManyRequests", True),
        (500, "InternalError", True),
        (503, "ServiceUnavailable", True),
    ],
)
def test_status_decides_retry(status, reason, temporary):
    failed = CallFailed.from_api("patch Deployment ns/web", api_error(status, reason))
    assert failed.temporary is temporary
    assert failed.summary() == {
        "operation": "patch Deployment ns/web",
        "status": status,
        "reason": reason,
        "message": f"{reason} here",
    }
    assert (
        str(failed) == f"patch Deployment ns/web: Kubernetes API {status} {reason}: {reason} here"
    )


def test_retry_after_is_honoured_and_bounded():
    assert CallFailed.from_api("x", api_error(429, "T", {"Retry-After": "7"})).retry_after_s == 7
    assert (
        CallFailed.from_api("x", api_error(429, "T", {"Retry-After": "9999"})).retry_after_s == 300
    )
    assert CallFailed.from_api("x", api_error(429, "T")).retry_after_s is None


def test_a_body_that_is_not_a_status_is_kept_as_the_message():
    exc = ApiException(status=502, reason="Bad Gateway")
    exc.body = "<html>proxy error</html>"
    failed = CallFailed.from_api("list Pod in web", exc)
    assert failed.temporary and failed.message == "<html>proxy error</html>"
    assert failed.reason == "Bad Gateway"
