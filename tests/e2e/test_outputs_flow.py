"""Every notifier end to end: a Trivy, trivy-operator, Aqua or Tracee event POSTed to the
bridge, through the route's template, to a local server that checks the request against
the vendor's documented format and answers as the vendor does. One worker serves every
route; each test posts to its route (`POST /tenant/<route>`) and waits for its outcomes."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from streams import config, plugins, records
from streams.records import schema_errors
from tests.conftest import SAMPLES
from tests.http_sink import http_sink
from tests.kafka_support import Worker, start_worker, value
from tests.vendors.base import Answer
from tests.vendors.data import SPLUNK_BUSY
from tests.vendors.fleet import SECRETS, Vendors, outputs_config
from tests.vendors.slack import RATE_LIMITED
from tests.vendors.smtp import mail_server

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
async def vendors(module_tmp: Path) -> AsyncIterator[Vendors]:
    found = Vendors(module_tmp)
    async with AsyncExitStack() as stack:
        for server in found.http_servers():
            await stack.enter_async_context(server)
        found.webhook = await stack.enter_async_context(http_sink())
        found.mail = stack.enter_context(
            mail_server(module_tmp, "mailer@example.com", SECRETS["SMTP_PASSWORD"])
        )
        yield found


@pytest.fixture(scope="module")
def config_path(module_tmp: Path, vendors: Vendors) -> Path:
    path = module_tmp / "cfg.yaml"
    path.write_text(outputs_config(vendors))
    return path


@pytest.fixture(scope="module")
def worker(bootstrap, config_path, log_dir, vendors) -> Iterator[Worker]:
    env = {**SECRETS, "SLACK_HOOK": vendors.slack.url("C1")}
    handle = start_worker(bootstrap, config_path, log_dir, "outputs", env)
    yield handle
    handle.stop()
    log = handle.log()
    for name, secret in env.items():
        if name != "SLACK_HOOK":
            assert secret not in log, name


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text())


def post(worker: Worker, route: str, event: dict[str, Any]) -> str:
    response = httpx.post(f"{worker.base_url}/tenant/{route}", json=event, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


async def outcomes_of(reader_factory, worker: Worker, event_id: str, count: int = 1) -> list[dict]:
    reader = await reader_factory(worker.topic("outcomes"))
    found = await reader.wait_for(
        lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id, count=count
    )
    outcomes = [value(m) for m in found]
    for outcome in outcomes:
        assert schema_errors("outcome", outcome) == []
        text = json.dumps(outcome)
        assert not any(s and s in text for s in SECRETS.values()), outcome
    return outcomes


async def one_success(reader_factory, worker: Worker, route: str, event: dict) -> dict:
    event_id = post(worker, route, event)
    (outcome,) = await outcomes_of(reader_factory, worker, event_id)
    assert (outcome["status"], outcome["final"]) == ("succeeded", True), outcome
    return outcome


async def test_slack_gets_block_kit_from_a_trivy_report(worker, vendors, reader_factory):
    outcome = await one_success(
        reader_factory, worker, "slack-trivy", sample("upstream/trivy-input.json")
    )
    (request,) = vendors.slack.on(lambda r: "BC1" in r.path)
    message = request.json()
    assert message["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Trivy: pom.xml (filesystem) — 2 critical, 2 high"},
    }
    text = message["blocks"][1]["text"]
    assert text["type"] == "mrkdwn" and text["text"].startswith(
        "*Trivy scan: pom.xml (filesystem)*"
    )
    assert "CVE-2019-17571" in text["text"]
    assert outcome["detail"]["url"].endswith("/services/…") and vendors.slack.problems == []
    assert request.headers["idempotency-key"] == outcome["command_id"]


async def test_slack_429_is_retried_after_retry_after(worker, vendors, reader_factory):
    path = vendors.slack.url("C2").split("127.0.0.1")[1].split("/", 1)[1]
    vendors.slack.script["/" + path] = [RATE_LIMITED]
    event_id = post(worker, "slack-limited", sample("upstream/trivy-input.json"))
    first, second = await outcomes_of(reader_factory, worker, event_id, count=2)
    assert (first["status"], first["final"], first["detail"]["status_code"]) == (
        "failed",
        False,
        429,
    )
    assert "rate_limited" in first["error"]
    assert (second["attempt"], second["status"]) == (2, "succeeded")
    sent = vendors.slack.on(lambda r: r.path == "/" + path)
    assert len(sent) == 2 and sent[0].body == sent[1].body


async def test_teams_workflow_gets_an_adaptive_card_and_202_succeeds(
    worker, vendors, reader_factory
):
    outcome = await one_success(
        reader_factory, worker, "teams-tracee", sample("tracee/trc-2-anti-debugging.json")
    )
    (request,) = vendors.teams.on(lambda r: r.path.startswith("/workflows/"))
    card = request.json()["attachments"][0]["content"]
    assert card["body"][0]["text"] == "Tracee TRC-2 Anti-Debugging (severity 3)"
    assert "MITRE ATT&CK: Defense Evasion" in card["body"][1]["text"]
    assert outcome["detail"]["status_code"] == 202 and vendors.teams.problems == []
    assert "sig=" not in json.dumps(outcome)  # the URL's credential stays out of the record


async def test_teams_connector_answers_1(worker, vendors, reader_factory):
    outcome = await one_success(
        reader_factory, worker, "teams-operator", sample("upstream/trivy-operator-input.json")
    )
    (request,) = vendors.teams.on(lambda r: r.path.startswith("/webhookb2/"))
    assert request.json()["type"] == "message" and outcome["detail"]["connector"] is True


async def test_email_over_starttls_with_auth_reaches_the_owner(worker, vendors, reader_factory):
    event = sample("upstream/aqua-input.json")
    event["application_scope_owners"] = ["owner@example.com"]
    outcome = await one_success(reader_factory, worker, "email-aqua", event)
    (mail,) = await vendors.mail.wait_for()
    assert mail.tls and mail.user == "mailer@example.com"
    assert mail.sender == "postee@example.com"
    assert mail.recipients == ["secops@example.com", "owner@example.com"]
    message = mail.message
    assert message["Subject"] == "Postee event: all-in-one:3.5.19223"
    assert message["To"] == "secops@example.com, owner@example.com"
    assert message["Message-ID"] == f"<{outcome['command_id']}@postee-streams>"
    assert message.get_content_type() == "multipart/alternative"
    html = message.get_body(("html",)).get_content()
    assert html.startswith("<") and "all-in-one:3.5.19223" in html and "&quot;image&quot;" in html
    assert "all-in-one" in message.get_body(("plain",)).get_content()


async def test_email_with_a_wrong_password_fails_without_retry(worker, reader_factory):
    event_id = post(worker, "email-refused", sample("upstream/aqua-input.json"))
    (outcome,) = await outcomes_of(reader_factory, worker, event_id)
    assert (outcome["status"], outcome["final"]) == ("failed", True)
    assert "authentication failed: 535" in outcome["error"]


async def test_jira_data_center_issue_with_every_field(worker, vendors, reader_factory):
    outcome = await one_success(
        reader_factory, worker, "jira-operator", sample("upstream/trivy-operator-input.json")
    )
    key = outcome["detail"]["issue"]
    fields = vendors.jira_dc.issues[key]
    assert key == "SEC-1" and outcome["detail"]["operation"] == "created"
    assert fields["project"] == {"key": "SEC"} and fields["issuetype"] == {"name": "Bug"}
    assert fields["priority"] == {"name": "High"} and fields["assignee"] == {"name": "jdoe"}
    assert fields["labels"] == ["trivy-operator", "postee"]
    assert fields["customfield_10030"] == {"value": "Security"} and fields["customfield_10031"] == 7
    assert fields["customfield_10020"] == 7  # the board's active sprint
    assert fields["summary"].startswith("VulnerabilityReport: ReplicaSet/nginx-6d4cf56db6")
    assert "*" in fields["description"] and "**" not in fields["description"]  # wiki bold
    (create,) = vendors.jira_dc.on(lambda r: r.path == "/rest/api/2/issue")
    assert create.headers["authorization"] == f"Bearer {SECRETS['JIRA_PAT']}"
    assert vendors.jira_dc.problems == []


async def test_jira_dedupe_gives_one_ticket_and_one_update(
    bootstrap, worker, vendors, reader_factory, config_path
):
    report = sample("upstream/trivy-input.json")
    report["ArtifactName"] = f"app-{uuid.uuid4().hex[:6]}.jar"
    created = await one_success(reader_factory, worker, "jira-dedupe", report)
    # The same report again, after the route's 1 minute dedupe window (event time is the
    # bridge's received-at header): the plugin lets it pass, Jira must not get a twin.
    later = records.iso(datetime.now(UTC) + timedelta(minutes=2))
    again_id = records.new_event_id()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        headers = records.event_headers(again_id, "http", later, only_route="jira-dedupe")
        await producer.send_and_wait(
            worker.topic("events"),
            json.dumps(report).encode(),
            key=again_id.encode(),
            headers=headers,
        )
    finally:
        await producer.stop()
    (updated,) = await outcomes_of(reader_factory, worker, again_id)
    assert updated["status"] == "succeeded", updated
    assert (
        created["detail"]["operation"] == "created"
        and updated["detail"]["operation"] == "commented"
    )
    key = created["detail"]["issue"]
    assert updated["detail"]["issue"] == key
    route = config.load(config_path).route("jira-dedupe")
    label = "postee-" + hashlib.sha256(plugins.dedupe_key(route, report).encode()).hexdigest()[:16]
    mine = [k for k, f in vendors.jira_cloud.issues.items() if label in f["labels"]]
    assert mine == [key] and len(vendors.jira_cloud.comments[key]) == 1
    assert vendors.jira_cloud.issues[key]["assignee"] == {"accountId": "5b10ac8d82e05b22cc7d4ef5"}
    searches = vendors.jira_cloud.on(lambda r: r.path == "/rest/api/3/search/jql")
    assert len(searches) >= 2 and vendors.jira_cloud.problems == []


async def test_jira_400_is_a_failed_outcome_with_jiras_reasons(worker, vendors, reader_factory):
    event_id = post(worker, "jira-refused", sample("upstream/trivy-input.json"))
    (outcome,) = await outcomes_of(reader_factory, worker, event_id)
    assert (outcome["status"], outcome["final"], outcome["detail"]["status_code"]) == (
        "failed",
        True,
        400,
    )
    assert "issuetype: Specify a valid issue type" in outcome["error"]


async def test_webhook_posts_the_description(worker, vendors, reader_factory):
    event = sample("tracee/trc-2-anti-debugging.json")
    await one_success(reader_factory, worker, "webhook-tracee", event)
    (request,) = await vendors.webhook.wait_for("/hook")
    assert (
        json.loads(request.body) == event and request.headers["Content-Type"] == "application/json"
    )


async def test_splunk_hec_event_retried_on_503(worker, vendors, reader_factory):
    vendors.splunk.script["/services/collector/event"] = [SPLUNK_BUSY]
    event_id = post(worker, "splunk-trivy", sample("upstream/trivy-input.json"))
    first, second = await outcomes_of(reader_factory, worker, event_id, count=2)
    assert (first["status"], first["final"]) == ("failed", False) and "Server is busy" in first[
        "error"
    ]
    assert second["status"] == "succeeded"
    (event,) = vendors.splunk.events
    assert event["sourcetype"] == "_json" and event["event"]["ArtifactName"] == "pom.xml"
    assert len(json.dumps(event["event"])) <= 4000 and second["detail"]["notes"]
    assert vendors.splunk.problems == []


async def test_servicenow_incident_with_template_values(worker, vendors, reader_factory):
    outcome = await one_success(
        reader_factory, worker, "snow-aqua", sample("upstream/aqua-input.json")
    )
    (record,) = vendors.snow.records
    assert outcome["detail"]["number"] == record["number"] == "INC0010001"
    assert record["short_description"] == "Aqua: all-in-one:3.5.19223 is not compliant"
    assert record["description"] == "Non-compliant image all-in-one:3.5.19223"
    assert (record["impact"], record["urgency"], record["category"]) == (1, 1, "Security incident")
    assert record["work_notes"].startswith("[code]<html>") and record["caller_id"] == "postee"
    assert vendors.snow.problems == []


async def test_pagerduty_dedup_key_from_the_plugin_key(
    worker, vendors, reader_factory, config_path
):
    event = sample("tracee/trc-2-anti-debugging.json")
    event["Context"]["hostName"] = f"host-{uuid.uuid4().hex[:6]}"
    outcome = await one_success(reader_factory, worker, "pagerduty-tracee", event)
    (request,) = vendors.pagerduty.requests
    sent = request.json()
    route = config.load(config_path).route("pagerduty-tracee")
    digest = hashlib.sha256(plugins.dedupe_key(route, event).encode()).hexdigest()[:32]
    assert sent["dedup_key"] == outcome["detail"]["dedup_key"] == f"postee-{digest}"
    assert sent["payload"]["summary"] == "Tracee TRC-2 Anti-Debugging (severity 3)"
    assert sent["routing_key"] == SECRETS["PD_ROUTING_KEY"] and vendors.pagerduty.problems == []


async def test_opsgenie_alert(worker, vendors, reader_factory):
    outcome = await one_success(
        reader_factory, worker, "opsgenie-tracee", sample("tracee/trc-7-ld-preload.json")
    )
    (request,) = vendors.opsgenie.requests
    alert = request.json()
    assert alert["priority"] == "P2" and alert["tags"] == ["security", "tracee"]
    assert alert["responders"] == [{"type": "user", "username": "oncall@example.com"}]
    assert alert["message"].startswith("Tracee TRC-7") and outcome["detail"]["request_id"]
    assert vendors.opsgenie.problems == []


async def test_nexus_iq_creates_the_application_and_submits_the_sbom(
    worker, vendors, reader_factory
):
    outcome = await one_success(
        reader_factory, worker, "nexus-trivy", sample("upstream/trivy-input.json")
    )
    (app,) = vendors.nexus.applications.values()
    assert app["publicId"] == "pom_xml_latest" and outcome["detail"]["created"] is True
    (bom,) = vendors.nexus.scans
    names = [e.text for e in bom.iter("{http://cyclonedx.org/schema/bom/1.4}name")]
    assert names == ["log4j:log4j"] and outcome["detail"]["status_url"]
    assert vendors.nexus.problems == []


async def test_dependency_track_gets_the_bom(worker, vendors, reader_factory):
    outcome = await one_success(
        reader_factory, worker, "dtrack-trivy", sample("upstream/trivy-input.json")
    )
    (upload,) = vendors.dtrack.boms
    assert (upload["projectName"], upload["projectVersion"]) == ("pom.xml", "latest")
    assert upload["bom"]["components"][0]["name"] == "log4j:log4j" and outcome["detail"]["token"]
    assert vendors.dtrack.problems == []


async def test_stdout_prints_the_description(worker, reader_factory):
    event = sample("tracee/trc-12-illegitimate-shell.json")
    event["marker"] = uuid.uuid4().hex
    outcome = await one_success(reader_factory, worker, "stdout-tracee", event)
    assert event["marker"] in worker.log() and outcome["detail"]["bytes"] > 0


# A vendor's error, answered once as the vendor answers it: final ones fail the command,
# temporary ones (429, 5xx) are retried and the second attempt succeeds.
VENDOR_ERRORS = [
    (
        "teams-tracee",
        "teams",
        "/workflows/a1b2c3/triggers/manual/paths/invoke",
        400,
        "tracee/trc-2-anti-debugging.json",
    ),
    ("pagerduty-tracee", "pagerduty", "/v2/enqueue", 429, "tracee/trc-7-ld-preload.json"),
    ("opsgenie-tracee", "opsgenie", "/v2/alerts", 422, "tracee/trc-2-anti-debugging.json"),
    ("snow-aqua", "snow", "/api/now/table/incident", 401, "upstream/aqua-input.json"),
    (
        "nexus-trivy",
        "nexus",
        "/api/v2/applications/organization/org-1",
        503,
        "upstream/trivy-input.json",
    ),
    ("dtrack-trivy", "dtrack", "/api/v1/bom", 401, "upstream/trivy-input.json"),
]
ERROR_BODIES = {
    "teams": {"error": {"code": "InvalidRequestContent", "message": "bad card"}},
    "pagerduty": {"status": "throttle event", "message": "Requests are arriving too quickly."},
    "opsgenie": {"message": "Request body is not processable.", "errors": {"message": "empty"}},
    "snow": {"error": {"message": "User Not Authenticated", "detail": None}, "status": "failure"},
    "nexus": "Service Unavailable",
    "dtrack": "Unauthorized",
}


@pytest.mark.parametrize(("route", "server", "path", "status", "event"), VENDOR_ERRORS)
async def test_vendor_errors(worker, vendors, reader_factory, route, server, path, status, event):
    getattr(vendors, server).script[path] = [Answer(status, ERROR_BODIES[server])]
    payload = sample(event)
    if "Context" in payload:  # past the route's dedupe, if it has one
        payload["Context"]["hostName"] = f"host-{uuid.uuid4().hex[:6]}"
    event_id = post(worker, route, payload)
    temporary = status == 429 or status >= 500
    found = await outcomes_of(reader_factory, worker, event_id, count=2 if temporary else 1)
    first = found[0]
    assert (first["status"], first["detail"]["status_code"]) == ("failed", status), first
    if temporary:
        assert first["final"] is False and (found[1]["attempt"], found[1]["status"]) == (
            2,
            "succeeded",
        )
    else:
        assert first["final"] is True and f"HTTP {status}" in first["error"]


async def test_webhook_5xx_is_retried(worker, vendors, reader_factory):
    vendors.webhook.script["/hook"] = [500]
    event_id = post(worker, "webhook-tracee", sample("tracee/trc-7-ld-preload.json"))
    first, second = await outcomes_of(reader_factory, worker, event_id, count=2)
    assert (first["status"], first["final"], first["detail"]["status_code"]) == (
        "failed",
        False,
        500,
    )
    assert second["status"] == "succeeded"
