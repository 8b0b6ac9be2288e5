"""jira: an issue in Jira Cloud or Data Center, through REST API 2 (upstream keys: `url`,
`user`, `password` or `token`, `tls-verify`, `project-key`, `issuetype` (default Task),
`priority`, `assignee`, `labels`, `sprint`, `board`, `unknowns`, `summary`,
`fix-versions`, `affects-versions`).

Authentication: `token` is a Data Center personal access token (Bearer), else Basic with
`user` and `password` (on Cloud: the account's email and an API token). Cloud is told by
a host ending in `atlassian.net`, or `cloud: true`; there an assignee is looked up to its
account id, on Data Center it is the user name. The first `assignee` is used
(`<%application_scope_owner%>` stands for the event's first owner). `unknowns` sets custom
fields by name or id (`customfield_10010`), converted by the field's schema (options,
numbers, lists). `sprint` is a sprint id, a sprint name of the `board`, or `active`;
`board` alone means its active sprint, as upstream.

Deduplication: when the route has `unique-message-props`, the issue is labelled
`postee-<hash of the dedupe key>`. Before creating, the project is searched for an
unresolved issue with that label; when there is one, the new report is added to it as a
comment instead of opening another issue. The label is the memory, kept in Jira itself,
so it holds across restarts and workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from actions.base import ActionPermanentError, ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.owners import OWNER_PLACEHOLDER, recipients_of
from actions.notify.transport import HttpNotifier, Reply, basic_auth, param_list

__all__ = ["JiraAction", "dedupe_label"]

SUMMARY_CHARS = 255
DESCRIPTION_CHARS = 32_000
SPRINT_SCHEMA = "com.pyxis.greenhopper.jira:gh-sprint"


def dedupe_label(key: str) -> str:
    return "postee-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


class JiraAction(HttpNotifier):
    type = "jira"
    timeout_s = 30.0
    fits = frozenset({"jira", "text"})

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        jira = _Jira(self, request)
        plan = ["search for an open issue labelled " + jira.label] if jira.label else []
        plan.append("create an issue" + (", or comment on the one found" if jira.label else ""))
        return {
            "url": jira.base,
            "project": jira.project,
            "plan": plan,
            "fields": jira.base_fields(),
        }

    async def deliver(self, request: ActionRequest) -> ActionResult:
        jira = _Jira(self, request)
        if jira.label:
            existing = await jira.find_open()
            if existing:
                return await jira.comment(existing)
        return await jira.create()


class _Jira:
    """One command's conversation with one Jira."""

    def __init__(self, notifier: JiraAction, request: ActionRequest) -> None:
        params = request.params
        self.notifier, self.request, self.params = notifier, request, params
        self.base = str(params.get("url", "")).rstrip("/")
        self.project = str(params.get("project-key", "")).upper()
        cloud = params.get("cloud")
        host = urlsplit(self.base).hostname or ""
        self.cloud = bool(cloud) if isinstance(cloud, bool) else host.endswith("atlassian.net")
        self.label = dedupe_label(request.dedupe_key) if request.dedupe_key else None
        template = request.template or {}
        title = str(params.get("summary") or template.get("title") or "Postee alert")
        self.summary = " ".join(title.split())[:SUMMARY_CHARS]
        self.description = _wiki(request.event_text)[:DESCRIPTION_CHARS]

    def _headers(self) -> dict[str, str]:
        token = self.params.get("token")
        if token:
            return {"Authorization": f"Bearer {token}"}
        return {"Authorization": basic_auth(self.params.get("user"), self.params.get("password"))}

    async def _call(self, method: str, path: str, body: Any = None) -> Reply:
        return await self.notifier.call(
            self.request,
            method,
            self.base + path,
            json_body=body,
            headers={**self._headers(), "Accept": "application/json"},
        )

    async def _get(self, path: str, what: str) -> Any:
        reply = await self._call("GET", path)
        self.notifier.require(reply, what)
        return reply.json()

    async def find_open(self) -> str | None:
        jql = f'project = "{self.project}" AND labels = "{self.label}" AND resolution = Unresolved'
        jql += " ORDER BY created DESC"
        path = "/rest/api/3/search/jql" if self.cloud else "/rest/api/2/search"
        found = await self._get(f"{path}?jql={quote(jql)}&fields=key&maxResults=1", "Jira search")
        issues = found.get("issues") if isinstance(found, dict) else None
        if issues and isinstance(issues[0], dict) and issues[0].get("key"):
            return str(issues[0]["key"])
        return None

    async def comment(self, key: str) -> ActionResult:
        body = f"Reported again by Postee (event {self.request.event_id}):\n\n{self.description}"
        reply = await self._call("POST", f"/rest/api/2/issue/{key}/comment", {"body": body})
        detail = {"url": self.base, "issue": key, "operation": "commented", "label": self.label}
        return self.notifier.result(reply, f"Jira comment on {key}", detail)

    def base_fields(self) -> dict[str, Any]:
        params = self.params
        fields: dict[str, Any] = {
            "project": {"key": self.project},
            "issuetype": {"name": str(params.get("issuetype") or "Task")},
            "summary": self.summary,
            "description": self.description,
        }
        if params.get("priority"):
            fields["priority"] = {"name": str(params["priority"])}
        labels = param_list(params.get("labels")) + ([self.label] if self.label else [])
        if labels:
            fields["labels"] = [label.replace(" ", "_") for label in labels]
        if params.get("fix-versions"):
            fields["fixVersions"] = [{"name": v} for v in param_list(params["fix-versions"])]
        if params.get("affects-versions"):
            fields["versions"] = [{"name": v} for v in param_list(params["affects-versions"])]
        return fields

    async def create(self) -> ActionResult:
        fields = self.base_fields()
        assignee = await self._assignee()
        if assignee:
            fields["assignee"] = assignee
        catalogue: list[Mapping[str, Any]] | None = None
        if self.params.get("unknowns") or self.params.get("sprint") or self.params.get("board"):
            catalogue = await self._get("/rest/api/2/field", "Jira fields")
        if self.params.get("unknowns"):
            fields.update(_custom_fields(self.params["unknowns"], catalogue or [], self.cloud))
        sprint = await self._sprint()
        if sprint is not None:
            field = next(
                (f for f in catalogue or [] if _schema(f).get("custom") == SPRINT_SCHEMA), None
            )
            if field is None:
                raise ActionPermanentError("Jira has no sprint field (is Jira Software installed?)")
            fields[str(field["id"])] = sprint
        reply = await self._call("POST", "/rest/api/2/issue", {"fields": fields})
        body = reply.json() if reply.ok else None
        key = body.get("key") if isinstance(body, dict) else None
        detail = {"url": self.base, "operation": "created", "issue": key}
        if key:
            detail["browse"] = f"{self.base}/browse/{key}"
        if self.label:
            detail["label"] = self.label
        result = self.notifier.result(reply, "Jira create issue", detail)
        if result.status == "failed":
            return ActionResult("failed", result.detail, _jira_errors(reply.json()) or result.error)
        return result

    async def _assignee(self) -> dict[str, str] | None:
        wanted = param_list(self.params.get("assignee")) or [str(self.params.get("user") or "")]
        if OWNER_PLACEHOLDER in wanted:
            wanted = recipients_of({"recipients": wanted}, self.request.event)
        name = next((w for w in wanted if w), None)
        if not name:
            return None
        if not self.cloud:
            return {"name": name}
        users = await self._get(f"/rest/api/2/user/search?query={quote(name)}", "Jira user search")
        if isinstance(users, list) and users and isinstance(users[0], dict):
            return {"accountId": str(users[0].get("accountId"))}
        return None

    async def _sprint(self) -> int | None:
        sprint, board = self.params.get("sprint"), self.params.get("board")
        if isinstance(sprint, int) or (isinstance(sprint, str) and sprint.isdigit()):
            return int(sprint)
        if not sprint and not board:
            return None
        board_name = str(board or f"{self.project} board")
        boards = await self._get(
            f"/rest/agile/1.0/board?projectKeyOrId={quote(self.project)}&name={quote(board_name)}",
            "Jira boards",
        )
        match = [b for b in (boards or {}).get("values", []) if b.get("name") == board_name]
        if not match:
            raise ActionPermanentError(f"no Jira board named {board_name!r} in {self.project}")
        state = "active" if not sprint or str(sprint).lower() == "active" else "active,future"
        sprints = await self._get(
            f"/rest/agile/1.0/board/{match[0]['id']}/sprint?state={state}", "Jira sprints"
        )
        values = (sprints or {}).get("values", [])
        chosen = [
            s
            for s in values
            if not sprint or str(sprint).lower() == "active" or s.get("name") == sprint
        ]
        if not chosen:
            raise ActionPermanentError(f"no sprint {sprint or 'active'!r} on board {board_name!r}")
        return int(chosen[0]["id"])


def _wiki(description: str) -> str:
    kind = shape.detect(description)
    if kind == "jira":
        return description
    if kind == "json":
        return "{code:json}\n" + shape.to_text(description).strip("`\n") + "\n{code}"
    return shape.md_to_jira(shape.to_text(description))


def _schema(field: Mapping[str, Any]) -> Mapping[str, Any]:
    schema = field.get("schema")
    return schema if isinstance(schema, Mapping) else {}


def _custom_fields(
    unknowns: Mapping[str, Any], catalogue: list[Mapping[str, Any]], cloud: bool
) -> dict[str, Any]:
    by_name = {str(f.get("name", "")).lower(): f for f in catalogue}
    by_id = {str(f.get("id")): f for f in catalogue}
    fields: dict[str, Any] = {}
    for name, value in unknowns.items():
        field = by_id.get(name) or by_name.get(str(name).lower())
        if field is None:
            if not str(name).startswith("customfield_"):
                raise ActionPermanentError(f"unknowns: Jira has no field named {name!r}")
            field = {"id": name}
        fields[str(field["id"])] = _convert(value, _schema(field), cloud)
    return fields


def _convert(value: Any, schema: Mapping[str, Any], cloud: bool) -> Any:
    kind, items = schema.get("type"), schema.get("items")
    values = value if isinstance(value, list) else [v.strip() for v in str(value).split(",")]
    if kind == "array":
        if items == "option":
            return [{"value": str(v)} for v in values]
        if items in ("component", "version"):
            return [{"name": str(v)} for v in values]
        return [str(v) for v in values]
    if kind == "option":
        return {"value": str(value)}
    if kind == "number":
        return float(value) if "." in str(value) else int(value)
    if kind in ("priority", "issuetype", "version", "component"):
        return {"name": str(value)}
    if kind == "user":
        return {"accountId": str(value)} if cloud else {"name": str(value)}
    return value


def _jira_errors(body: Any) -> str | None:
    """Jira's 400 body: `{"errorMessages": [...], "errors": {"field": "why"}}`."""
    if not isinstance(body, dict):
        return None
    parts = [str(m) for m in body.get("errorMessages") or []]
    parts += [f"{k}: {v}" for k, v in (body.get("errors") or {}).items()]
    return "Jira refused the issue: " + "; ".join(parts) if parts else None
