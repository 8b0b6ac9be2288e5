"""dependencytrack: a CycloneDX SBOM to Dependency-Track (upstream keys: `url`,
`dependency-track-api-key`).

As upstream: the title is `project:version` and the description the CycloneDX JSON BOM
(`postee.trivy.cyclonedx` makes one from a Trivy report). `PUT <url>/api/v1/bom` with
`X-Api-Key` and `{"projectName", "projectVersion", "autoCreate": true, "bom": base64}`;
Dependency-Track answers 200 with the processing token. Uploading the same BOM again
replaces the project's components, so a retry is harmless.
"""

from __future__ import annotations

import base64
from typing import Any

from actions.base import ActionPermanentError, ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier

__all__ = ["DependencyTrackAction"]


class DependencyTrackAction(HttpNotifier):
    type = "dependencytrack"
    timeout_s = 60.0
    fits = frozenset({"json"})

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        body = upload(request)
        return {
            "method": "PUT",
            "url": _url(request),
            "project": body["projectName"],
            "version": body["projectVersion"],
            "bom_bytes": len(request.event_text.encode()),
        }

    async def deliver(self, request: ActionRequest) -> ActionResult:
        body = upload(request)
        reply = await self.call(
            request,
            "PUT",
            _url(request),
            json_body=body,
            headers={"X-Api-Key": str(request.params.get("dependency-track-api-key", ""))},
        )
        answer = reply.json() if reply.ok else None
        detail: dict[str, Any] = {
            "url": _url(request),
            "project": body["projectName"],
            "version": body["projectVersion"],
        }
        if isinstance(answer, dict) and answer.get("token"):
            detail["token"] = answer["token"]
        return self.result(reply, "Dependency-Track", detail)


def _url(request: ActionRequest) -> str:
    return str(request.params.get("url", "")).rstrip("/") + "/api/v1/bom"


def upload(request: ActionRequest) -> dict[str, Any]:
    title = str((request.template or {}).get("title") or "")
    project, sep, version = title.partition(":")
    if not sep or not project.strip():
        raise ActionPermanentError(
            f"the title must be 'project:version' for Dependency-Track, got {title!r}"
        )
    bom = shape.parse_json(request.event_text)
    if not isinstance(bom, dict) or bom.get("bomFormat") != "CycloneDX":
        raise ActionPermanentError("the description is not a CycloneDX JSON BOM (wrong template?)")
    encoded = base64.b64encode(request.event_text.encode("utf-8")).decode("ascii")
    return {
        "projectName": project.strip(),
        "projectVersion": version.strip(),
        "autoCreate": True,
        "bom": encoded,
    }
