"""Jira REST API 2 (developer.atlassian.com: Cloud platform REST API v2 and Data Center):
create issue `POST /rest/api/2/issue` (201 `{"id", "key", "self"}`; 400 `{"errorMessages":
[...], "errors": {field: why}}`), search (Cloud `GET /rest/api/3/search/jql`, Data Center
`GET /rest/api/2/search`), comment `POST /rest/api/2/issue/{key}/comment` (201), fields
`GET /rest/api/2/field`, users `GET /rest/api/2/user/search?query=` (Cloud), boards and
sprints `GET /rest/agile/1.0/board…`. Authentication: Basic (email and API token) or, on
Data Center, `Bearer <personal access token>`; else 401."""

from __future__ import annotations

import base64
import re
from typing import Any

from aiohttp import web

from tests.vendors.base import Answer, VendorServer, json_body

ISSUE_TYPES = {"Task", "Bug", "Story"}
PRIORITIES = {"Highest", "High", "Medium", "Low", "Lowest"}
FIELDS = [
    {"id": "summary", "name": "Summary", "custom": False, "schema": {"type": "string"}},
    {
        "id": "customfield_10020",
        "name": "Sprint",
        "custom": True,
        "schema": {
            "type": "array",
            "items": "json",
            "custom": "com.pyxis.greenhopper.jira:gh-sprint",
        },
    },
    {"id": "customfield_10030", "name": "Team", "custom": True, "schema": {"type": "option"}},
    {"id": "customfield_10031", "name": "Risk score", "custom": True, "schema": {"type": "number"}},
]
UNAUTHORIZED = Answer(401, {"errorMessages": ["You are not authenticated."], "errors": {}})


class JiraServer(VendorServer):
    def __init__(self, *, cloud: bool, user: str, secret: str, projects: set[str]) -> None:
        super().__init__()
        self.cloud = cloud
        # Cloud: Basic with an email and an API token; Data Center: a personal access token.
        self.credentials = (
            {"Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}
            if cloud
            else {f"Bearer {secret}"}
        )
        self.projects = projects
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[str]] = {}
        self.accounts = {"alice@example.com": "5b10ac8d82e05b22cc7d4ef5"}

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/rest/api/2/issue", self.create)
        app.router.add_post("/rest/api/2/issue/{key}/comment", self.comment)
        # Cloud removed /rest/api/2/search (410) for /rest/api/3/search/jql.
        app.router.add_get(
            "/rest/api/3/search/jql" if self.cloud else "/rest/api/2/search", self.search
        )
        app.router.add_get(
            "/rest/api/2/search" if self.cloud else "/rest/api/3/search/jql", self.gone
        )
        app.router.add_get("/rest/api/2/field", self.fields)
        app.router.add_get("/rest/api/2/user/search", self.users)
        app.router.add_get("/rest/agile/1.0/board", self.boards)
        app.router.add_get("/rest/agile/1.0/board/{id}/sprint", self.sprints)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") in self.credentials

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.refuse("create without valid credentials", UNAUTHORIZED)
        body = await json_body(request)
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, dict):
            return self.refuse(
                "no fields", Answer(400, {"errorMessages": ["No fields"], "errors": {}})
            )
        errors = field_errors(fields, self.projects, self.cloud)
        if errors:
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        key = f"{fields['project']['key']}-{len(self.issues) + 1}"
        self.issues[key] = fields
        self.comments[key] = []
        return web.json_response(
            {
                "id": str(10000 + len(self.issues)),
                "key": key,
                "self": f"{self.base_url}/rest/api/2/issue/{key}",
            },
            status=201,
        )

    async def comment(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.refuse("comment without valid credentials", UNAUTHORIZED)
        key = request.match_info["key"]
        body = await json_body(request)
        if key not in self.issues:
            return web.json_response(
                {
                    "errorMessages": [
                        "Issue does not exist or you do not have permission to see it."
                    ],
                    "errors": {},
                },
                status=404,
            )
        if not isinstance(body, dict) or not isinstance(body.get("body"), str) or not body["body"]:
            return self.refuse(
                "comment without a body",
                Answer(
                    400,
                    {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}},
                ),
            )
        self.comments[key].append(body["body"])
        return web.json_response(
            {"id": str(len(self.comments[key])), "body": body["body"]}, status=201
        )

    async def search(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.refuse("search without valid credentials", UNAUTHORIZED)
        jql = request.query.get("jql", "")
        project = re.search(r'project = "([^"]+)"', jql)
        label = re.search(r'labels = "([^"]+)"', jql)
        if not project or not label or "resolution = Unresolved" not in jql:
            return self.refuse(
                f"unexpected JQL {jql!r}",
                Answer(400, {"errorMessages": ["Error in the JQL Query"], "errors": {}}),
            )
        found = [
            {"id": key, "key": key}
            for key, fields in sorted(self.issues.items(), reverse=True)
            if fields["project"]["key"] == project.group(1)
            and label.group(1) in fields.get("labels", [])
        ]
        if request.path.startswith("/rest/api/3/"):
            return web.json_response(
                {"issues": found[: int(request.query.get("maxResults", 50))], "isLast": True}
            )
        return web.json_response(
            {"startAt": 0, "maxResults": 50, "total": len(found), "issues": found}
        )

    async def gone(self, request: web.Request) -> web.Response:
        return self.refuse(
            f"{request.path} is not this Jira's search", Answer(410, {"errorMessages": ["Gone"]})
        )

    async def fields(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.refuse("fields without valid credentials", UNAUTHORIZED)
        return web.json_response(FIELDS)

    async def users(self, request: web.Request) -> web.Response:
        query = request.query.get("query", "")
        account = self.accounts.get(query)
        return web.json_response([{"accountId": account, "emailAddress": query}] if account else [])

    async def boards(self, request: web.Request) -> web.Response:
        if request.query.get("projectKeyOrId") not in self.projects:
            return web.json_response({"errorMessages": ["No project could be found"]}, status=400)
        name = request.query.get("name", "")
        boards = [{"id": 1, "name": "SEC board", "type": "scrum"}]
        return web.json_response(
            {"values": [b for b in boards if name in b["name"]], "isLast": True}
        )

    async def sprints(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"values": [{"id": 7, "name": "Sprint 7", "state": "active"}], "isLast": True}
        )


def field_errors(fields: dict[str, Any], projects: set[str], cloud: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    if (fields.get("project") or {}).get("key") not in projects:
        errors["project"] = "valid project is required"
    if (fields.get("issuetype") or {}).get("name") not in ISSUE_TYPES:
        errors["issuetype"] = "Specify a valid issue type"
    summary = fields.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        errors["summary"] = "You must specify a summary of the issue."
    elif len(summary) > 255 or "\n" in summary:
        errors["summary"] = "Summary must be less than 255 characters, on one line."
    if "description" in fields and not isinstance(fields["description"], str):
        errors["description"] = "Operation value must be a string"
    if "priority" in fields and (fields["priority"] or {}).get("name") not in PRIORITIES:
        errors["priority"] = "Specify the Priority (id or name) in the string format"
    labels = fields.get("labels", [])
    if not isinstance(labels, list) or any(not isinstance(x, str) or " " in x for x in labels):
        errors["labels"] = "The label must not contain spaces."
    assignee = fields.get("assignee")
    # Cloud identifies users by account id only (GDPR); Data Center by user name.
    if assignee is not None and not assignee.get("accountId" if cloud else "name"):
        errors["assignee"] = "Specify a valid value for assignee"
    known = {f["id"] for f in FIELDS}
    for name in fields:
        if name.startswith("customfield_") and name not in known:
            errors[name] = (
                f"Field '{name}' cannot be set. It is not on the appropriate screen, or unknown."
            )
    if "customfield_10030" in fields and not isinstance(fields["customfield_10030"], dict):
        errors["customfield_10030"] = (
            "Could not find valid 'id' or 'value' in the Parent Option object."
        )
    if "customfield_10031" in fields and not isinstance(fields["customfield_10031"], int | float):
        errors["customfield_10031"] = "Operation value must be a number"
    if "customfield_10020" in fields and not isinstance(fields["customfield_10020"], int):
        errors["customfield_10020"] = "Number value expected as the Sprint id."
    return errors
