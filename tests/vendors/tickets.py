"""ServiceNow Table API (docs.servicenow.com "Table API"): `POST
/api/now/table/{table}` with Basic auth, JSON in, `Accept: application/json`; answers
201 `{"result": {"sys_id", "number", ...}}`, 401 and 400 as `{"error": {"message",
"detail"}, "status": "failure"}`.

PagerDuty Events API v2 (developer.pagerduty.com "Send an Alert Event"): `POST
/v2/enqueue`, `routing_key` (32 characters), `event_action`, `payload.summary` (at
most 1,024), `payload.source`, `payload.severity`; answers 202 `{"status": "success",
"message": "Event processed", "dedup_key"}`, 400 `{"status": "invalid event", "errors"}`,
429 when throttled.

Opsgenie Alert API (docs.opsgenie.com "Create Alert"): `POST /v2/alerts` with
`Authorization: GenieKey <key>`, `message` required (at most 130), `alias` (at most
512), `priority` P1..P5, responders typed; answers 202 `{"result": "Request will be
processed", "took", "requestId"}`, 422 naming the errors, 401 for a wrong key."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from aiohttp import web

from tests.vendors.base import Answer, VendorServer, json_body


class ServiceNowServer(VendorServer):
    def __init__(self, *, user: str, password: str, tables: set[str]) -> None:
        super().__init__()
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.tables = tables
        self.records: list[dict[str, Any]] = []

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/api/now/table/{table}", self.insert)

    async def insert(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != self.auth:
            return self.refuse(
                "insert without valid credentials", _snow_error(401, "User Not Authenticated")
            )
        table = request.match_info["table"]
        if table not in self.tables:
            return self.refuse(f"unknown table {table}", _snow_error(400, f"Invalid table {table}"))
        if "application/json" not in request.headers.get("Accept", ""):
            return self.refuse("no Accept: application/json", _snow_error(406, "Not Acceptable"))
        record = await json_body(request)
        if not isinstance(record, dict) or not isinstance(record.get("short_description"), str):
            return self.refuse(
                "no short_description", _snow_error(400, "Exception while reading request")
            )
        number = f"INC{10001 + len(self.records):07d}"
        created = {**record, "sys_id": uuid.uuid4().hex, "number": number}
        self.records.append(created)
        return web.json_response({"result": created}, status=201)


def _snow_error(status: int, message: str) -> Answer:
    return Answer(status, {"error": {"message": message, "detail": None}, "status": "failure"})


SEVERITIES = {"critical", "error", "warning", "info"}
PD_THROTTLED = Answer(
    429,
    {"status": "throttle event", "message": "Requests for this service are arriving too quickly."},
)


class PagerDutyServer(VendorServer):
    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self.enqueue)

    async def enqueue(self, request: web.Request) -> web.Response:
        event = await json_body(request)
        errors = pagerduty_errors(event)
        if errors:
            body = {
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": errors,
            }
            return self.refuse("; ".join(errors), Answer(400, body))
        key = event.get("dedup_key") or uuid.uuid4().hex
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": key}, status=202
        )


def pagerduty_errors(event: Any) -> list[str]:
    if not isinstance(event, dict):
        return ["the body is not a JSON object"]
    errors = []
    if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
        errors.append("'routing_key' is invalid")
    if event.get("event_action") not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    if len(str(event.get("dedup_key", ""))) > 255:
        errors.append("'dedup_key' is too long")
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else {}
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary or len(summary) > 1024:
        errors.append("'payload.summary' is missing or too long")
    if not payload.get("source"):
        errors.append("'payload.source' is missing")
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' is invalid")
    return errors


class OpsgenieServer(VendorServer):
    def __init__(self, *, key: str) -> None:
        super().__init__()
        self.key = key

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v2/alerts", self.create)

    async def create(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        if request.headers.get("Authorization") != f"GenieKey {self.key}":
            body = {"message": "Could not authenticate", "took": 0.0, "requestId": request_id}
            return self.refuse("wrong or missing GenieKey", Answer(401, body))
        alert = await json_body(request)
        errors = opsgenie_errors(alert)
        if errors:
            body = {
                "message": "Request body is not processable. Please check the errors.",
                "errors": errors,
                "took": 0.0,
                "requestId": request_id,
            }
            return self.refuse(str(errors), Answer(422, body))
        body = {"result": "Request will be processed", "took": 0.1, "requestId": request_id}
        return web.json_response(body, status=202)


def opsgenie_errors(alert: Any) -> dict[str, str]:
    if not isinstance(alert, dict):
        return {"body": "must be a JSON object"}
    errors = {}
    message = alert.get("message")
    if not isinstance(message, str) or not message.strip():
        errors["message"] = "Message can not be empty."
    elif len(message) > 130:
        errors["message"] = "Message can not be longer than 130 characters."
    if len(str(alert.get("alias", ""))) > 512:
        errors["alias"] = "Alias can not be longer than 512 characters."
    if alert.get("priority", "P3") not in {"P1", "P2", "P3", "P4", "P5"}:
        errors["priority"] = "Priority should be one of [P1, P2, P3, P4, P5]"
    for key in ("responders", "visibleTo"):
        for item in alert.get(key, []):
            if item.get("type") not in {"user", "team", "escalation", "schedule"}:
                errors[key] = "Responder type should be one of [user, team, escalation, schedule]"
            if item.get("type") == "user" and not (item.get("username") or item.get("id")):
                errors[key] = "User responder needs a username or id"
    return errors
