"""serviceNow: a record through the Table API (upstream keys: `user`, `password`,
`instance`, `board`: the table, default `incident`).

`POST https://<instance>.service-now.com/api/now/table/<board>` with Basic auth; an
`instance` that is a URL is used as the base (on-premises, tests). Fields as upstream:
`short_description` (title), `description` (the template's `summary`, else the text),
`work_notes` (the report as HTML in `[code]` tags), `caller_id` (user), and `category`,
`subcategory`, `impact` and `urgency` (severity), `assigned_to`, `assignment_group`,
`opened_at` from the template's `result_*` values when it gives them. `correlation_id`
is the command id, so the incident names the command that opened it. 201 succeeds.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from actions.base import ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier, basic_auth

__all__ = ["ServiceNowAction"]

SHORT_DESCRIPTION_CHARS = 160
#: Template values (`result_<name>`) copied into the record, by field.
TEMPLATE_FIELDS = {
    "category": "category",
    "subcategory": "subcategory",
    "assigned_to": "assigned_to",
    "assignment_group": "assigned_group",
}


class ServiceNowAction(HttpNotifier):
    type = "servicenow"
    timeout_s = 30.0
    fits = frozenset({"html", "text"})

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        return {"method": "POST", "url": table_url(request), "record": record(request)}

    async def deliver(self, request: ActionRequest) -> ActionResult:
        params = request.params
        url = table_url(request)
        reply = await self.call(
            request,
            "POST",
            url,
            json_body=record(request),
            headers={
                "Authorization": basic_auth(params.get("user"), params.get("password")),
                "Accept": "application/json",
            },
        )
        body = reply.json() if reply.ok else None
        created = body.get("result") if isinstance(body, dict) else None
        detail: dict[str, Any] = {"url": url}
        if isinstance(created, dict):
            detail |= {"sys_id": created.get("sys_id"), "number": created.get("number")}
        return self.result(reply, "ServiceNow", detail)


def table_url(request: ActionRequest) -> str:
    instance = str(request.params.get("instance", "")).rstrip("/")
    base = (
        instance
        if instance.startswith(("http://", "https://"))
        else f"https://{instance}.service-now.com"
    )
    return f"{base}/api/now/table/{request.params.get('board') or 'incident'}"


def record(request: ActionRequest) -> dict[str, Any]:
    template = request.template or {}
    given = template.get("extra")
    extra: dict[str, Any] = given if isinstance(given, dict) else {}
    description = request.event_text
    work = (
        description
        if shape.detect(description) == "html"
        else shape.md_to_html(shape.to_text(description))
    )
    title = " ".join(str(template.get("title") or "Postee alert").split())
    fields: dict[str, Any] = {
        "short_description": title[:SHORT_DESCRIPTION_CHARS],
        "description": str(extra.get("summary") or shape.to_text(description)),
        "work_notes": f"[code]{work}[/code]",
        "caller_id": str(request.params.get("user") or ""),
        "correlation_id": request.command_id,
        "correlation_display": "Postee Streams",
    }
    for field, name in TEMPLATE_FIELDS.items():
        if extra.get(name) not in (None, ""):
            fields[field] = str(extra[name])
    severity = extra.get("severity")
    if isinstance(severity, int | str) and str(severity).isdigit():
        fields["impact"] = fields["urgency"] = int(severity)
    opened = extra.get("date")
    if isinstance(opened, int | float) or (isinstance(opened, str) and opened.isdigit()):
        moment = datetime.fromtimestamp(int(opened), UTC)
        fields["opened_at"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    return fields
