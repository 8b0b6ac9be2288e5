"""nexusIq: a CycloneDX SBOM to Sonatype Nexus IQ (upstream keys: `url`, `user`,
`password`, `organization-id`).

As upstream: the title names the application (`.`, `:` and `/` become `_`); it is looked
up in the organization (`GET /api/v2/applications/organization/<id>`) and created when
missing (`POST /api/v2/applications`), then the SBOM is submitted
(`POST /api/v2/scan/applications/<app id>/sources/cyclone`, `application/xml`), which
IQ answers with 202 and a status URL. The description is CycloneDX XML, as upstream's
`postee.vuls.cyclondx` gives; a CycloneDX JSON BOM (`postee.trivy.cyclonedx`) is turned
into XML first (components only). Basic auth on every call.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from actions.base import ActionPermanentError, ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier, basic_auth

__all__ = ["NexusIqAction", "application_name", "cyclonedx_xml"]

_NOT_ALLOWED = re.compile(r"[.:/]")


def application_name(title: str) -> str:
    return _NOT_ALLOWED.sub("_", title.strip())


class NexusIqAction(HttpNotifier):
    type = "nexusiq"
    timeout_s = 120.0  # upstream's client timeout
    fits = frozenset({"json", "text"})

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        return {
            "url": _base(request),
            "application": application_name(_title(request)),
            "organization": request.params.get("organization-id"),
            "bom_bytes": len(bom_xml(request).encode()),
        }

    async def deliver(self, request: ActionRequest) -> ActionResult:
        base, org = _base(request), str(request.params.get("organization-id", ""))
        name = application_name(_title(request))
        bom = bom_xml(request)
        auth = {
            "Authorization": basic_auth(request.params.get("user"), request.params.get("password"))
        }
        json_headers = {**auth, "Accept": "application/json"}
        listed = await self.call(
            request,
            "GET",
            f"{base}/api/v2/applications/organization/{quote(org)}",
            headers=json_headers,
        )
        self.require(listed, "Nexus IQ applications")
        apps = (listed.json() or {}).get("applications") or []
        app_id = next((a.get("id") for a in apps if a.get("publicId") == name), None)
        detail: dict[str, Any] = {"url": base, "application": name, "created": app_id is None}
        if app_id is None:
            made = await self.call(
                request,
                "POST",
                f"{base}/api/v2/applications",
                json_body={"publicId": name, "name": name, "organizationId": org},
                headers=json_headers,
            )
            self.require(made, "Nexus IQ create application", detail)
            app_id = (made.json() or {}).get("id")
            if not app_id:
                raise ActionPermanentError("Nexus IQ created the application but gave no id")
        detail["application_id"] = app_id
        reply = await self.call(
            request,
            "POST",
            f"{base}/api/v2/scan/applications/{quote(str(app_id))}/sources/cyclone",
            content=bom.encode("utf-8"),
            headers={**auth, "Content-Type": "application/xml"},
        )
        answer = reply.json() if reply.ok else None
        if isinstance(answer, dict) and answer.get("statusUrl"):
            detail["status_url"] = answer["statusUrl"]
        return self.result(reply, "Nexus IQ scan", detail)


def _base(request: ActionRequest) -> str:
    return str(request.params.get("url", "")).rstrip("/")


def _title(request: ActionRequest) -> str:
    title = str((request.template or {}).get("title") or "").strip()
    if not title:
        raise ActionPermanentError("the title names the Nexus IQ application, and it is empty")
    return title


def bom_xml(request: ActionRequest) -> str:
    text = request.event_text.strip()
    if text.startswith("<"):
        return text
    bom = shape.parse_json(text)
    if isinstance(bom, dict) and bom.get("bomFormat") == "CycloneDX":
        return cyclonedx_xml(bom)
    raise ActionPermanentError("the description is not a CycloneDX BOM (wrong template?)")


def cyclonedx_xml(bom: dict[str, Any]) -> str:
    """The components of a CycloneDX JSON BOM as CycloneDX 1.4 XML."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<bom xmlns="http://cyclonedx.org/schema/bom/1.4" version="1">',
        "  <components>",
    ]
    for component in bom.get("components") or []:
        if not isinstance(component, dict):
            continue
        kind = escape(str(component.get("type") or "library"), {'"': "&quot;"})
        lines.append(f'    <component type="{kind}">')
        for key in ("group", "name", "version", "purl"):
            if component.get(key):
                lines.append(f"      <{key}>{escape(str(component[key]))}</{key}>")
        lines.append("    </component>")
    lines += ["  </components>", "</bom>"]
    return "\n".join(lines) + "\n"
