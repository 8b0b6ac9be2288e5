"""Splunk HTTP Event Collector (docs.splunk.com "Format events for HTTP Event
Collector"): `POST /services/collector/event`, `Authorization: Splunk <token>`, JSON
events with a non-empty `event` (and optional numeric `time`); answers 200 `{"text":
"Success", "code": 0}`, 401 `{"text": "Token is required", "code": 2}`, 403 `{"text":
"Invalid token", "code": 4}`, 400 `{"text": "Event field is required", "code": 12}`, 503
`{"text": "Server is busy", "code": 9}`.

Nexus IQ (help.sonatype.com, Application and Third-Party Scan REST APIs): `GET
/api/v2/applications/organization/{id}`, `POST /api/v2/applications`, `POST
/api/v2/scan/applications/{id}/sources/cyclone` (CycloneDX XML); Basic auth; the scan
answers 202 `{"statusUrl"}`.

Dependency-Track (docs.dependencytrack.org "REST API", BOM upload): `PUT /api/v1/bom`
with `X-Api-Key`, JSON `{"projectName", "projectVersion", "autoCreate", "bom": base64
CycloneDX}`; answers 200 `{"token"}`, 401 without a valid key."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
import xml.etree.ElementTree as ET
from typing import Any

from aiohttp import web

from tests.vendors.base import Answer, VendorServer, json_body

SPLUNK_BUSY = Answer(503, {"text": "Server is busy", "code": 9})


class SplunkServer(VendorServer):
    def __init__(self, *, token: str) -> None:
        super().__init__()
        self.token = token
        self.events: list[dict[str, Any]] = []

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/services/collector/event", self.collect)

    async def collect(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Splunk "):
            return self.refuse(
                "no Splunk token", Answer(401, {"text": "Token is required", "code": 2})
            )
        if auth != f"Splunk {self.token}":
            return self.refuse("wrong token", Answer(403, {"text": "Invalid token", "code": 4}))
        try:
            event = json.loads(await request.read())
        except ValueError:
            return self.refuse("not JSON", Answer(400, {"text": "Invalid data format", "code": 6}))
        if not isinstance(event, dict) or not event.get("event"):
            return self.refuse(
                "no event", Answer(400, {"text": "Event field is required", "code": 12})
            )
        if "time" in event and not isinstance(event["time"], int | float):
            return self.refuse(
                "time not numeric", Answer(400, {"text": "Invalid data format", "code": 6})
            )
        self.events.append(event)
        return web.json_response({"text": "Success", "code": 0})


class NexusIqServer(VendorServer):
    def __init__(self, *, user: str, password: str, organization: str) -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.organization = organization
        self.applications: dict[str, dict[str, str]] = {}
        self.scans: list[ET.Element] = []

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/api/v2/applications/organization/{org}", self.list_apps)
        app.router.add_post("/api/v2/applications", self.create_app)
        app.router.add_post("/api/v2/scan/applications/{id}/sources/cyclone", self.scan)

    def _denied(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != self.auth:
            return self.refuse(
                f"{request.path} without valid credentials", Answer(401, "Unauthorized")
            )
        return None

    async def list_apps(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        if request.match_info["org"] != self.organization:
            return self.refuse("unknown organization", Answer(404, "Organization not found"))
        return web.json_response({"applications": list(self.applications.values())})

    async def create_app(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        body = await json_body(request)
        if not isinstance(body, dict) or not all(
            body.get(k) for k in ("publicId", "name", "organizationId")
        ):
            return self.refuse(
                "application without publicId, name or organizationId", Answer(400, "Bad Request")
            )
        if any(c in body["publicId"] for c in ".:/"):
            return self.refuse("publicId with . : or /", Answer(400, "Invalid publicId"))
        app = {"id": uuid.uuid4().hex, **body}
        self.applications[app["id"]] = app
        return web.json_response(app)

    async def scan(self, request: web.Request) -> web.Response:
        if denied := self._denied(request):
            return denied
        app_id = request.match_info["id"]
        if app_id not in self.applications:
            return self.refuse(
                "scan of an unknown application", Answer(404, "Application not found")
            )
        if request.content_type != "application/xml":
            return self.refuse(
                f"content type {request.content_type}", Answer(415, "Unsupported Media Type")
            )
        try:
            root = ET.fromstring(await request.read())
        except ET.ParseError as exc:
            return self.refuse(f"not XML: {exc}", Answer(400, "Invalid SBOM"))
        if not root.tag.startswith("{http://cyclonedx.org/schema/bom/") or not root.tag.endswith(
            "}bom"
        ):
            return self.refuse(f"not a CycloneDX bom: {root.tag}", Answer(400, "Invalid SBOM"))
        self.scans.append(root)
        status = f"api/v2/scan/applications/{app_id}/status/{uuid.uuid4().hex}"
        return web.json_response({"statusUrl": status}, status=202)


class DependencyTrackServer(VendorServer):
    def __init__(self, *, key: str) -> None:
        super().__init__()
        self.key = key
        self.boms: list[dict[str, Any]] = []

    def setup(self, app: web.Application) -> None:
        app.router.add_put("/api/v1/bom", self.upload)

    async def upload(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Api-Key") != self.key:
            return self.refuse("wrong or missing X-Api-Key", Answer(401, "Unauthorized"))
        body = await json_body(request)
        if (
            not isinstance(body, dict)
            or not body.get("projectName")
            or "projectVersion" not in body
        ):
            return self.refuse("no projectName or projectVersion", Answer(400, "Bad Request"))
        if body.get("autoCreate") is not True:
            return self.refuse(
                "autoCreate is not true", Answer(404, "The project could not be found.")
            )
        try:
            bom = json.loads(base64.b64decode(body.get("bom", ""), validate=True))
        except (binascii.Error, ValueError):
            return self.refuse("bom is not base64 JSON", Answer(400, "The uploaded BOM is invalid"))
        if bom.get("bomFormat") != "CycloneDX":
            return self.refuse("bom is not CycloneDX", Answer(400, "The uploaded BOM is invalid"))
        self.boms.append({**body, "bom": bom})
        return web.json_response({"token": str(uuid.uuid4())})
