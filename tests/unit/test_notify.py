"""The notifiers without a network: what they make of each template shape, their
limits (Slack blocks, Teams size, Splunk size-limit), dry runs, and secret keys."""

from __future__ import annotations

import json
from typing import Any

import pytest

import actions
from actions.base import ActionPermanentError, ActionRequest
from actions.notify import email, jira, nexusiq, shape, slack, splunk, teams
from streams import secrets
from tests.vendors.smtp import mail_server


def request(
    params: dict[str, Any], text: str, title: str = "A title", **more: Any
) -> ActionRequest:
    return ActionRequest(
        command_id="c" * 32,
        event_id="e-1",
        action="a",
        params=params,
        event=more.pop("event", {}),
        event_text=text,
        template={"title": title, "description": text, "url": more.pop("url", None)},
        **more,
    )


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('[{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]', "blocks"),
        ('{"type": "divider"},{"type": "divider"},', "blocks"),  # upstream's slack templates
        ('{"type": "AdaptiveCard", "version": "1.4", "body": []}', "card"),
        ('{"image": "alpine"}', "json"),
        ("<p>Hello <b>there</b></p>", "html"),
        ("h2. Findings\n* one", "jira"),
        ("**Trivy scan**\n- CRITICAL: 2", "text"),
        ("just words", "text"),
    ],
)
def test_detect(text, kind):
    assert shape.detect(text) == kind


def test_html_to_text_keeps_structure():
    text = shape.html_to_text(
        "<html><head><style>p{}</style></head><body><h2>Scan</h2><p>Image <b>alpine</b>"
        "</p><ul><li>CVE-1</li><li>CVE-2</li></ul><a href='https://x.example'>more</a></body></html>"
    )
    assert text == "**Scan**\n\nImage **alpine**\n\n- CVE-1\n- CVE-2\nmore (https://x.example)"


def test_markdown_conversions_escape_and_translate():
    md = "# Head\n**bold** & <tag> [link](https://x.example)\n- item"
    assert shape.md_to_mrkdwn(md) == (
        "*Head*\n*bold* &amp; &lt;tag&gt; <https://x.example|link>\n- item"
    )
    assert shape.md_to_jira(md) == "h1. Head\n*bold* & <tag> [link|https://x.example]\n* item"
    html = shape.md_to_html(md, "T")
    assert "<h1>Head</h1>" in html and "&lt;tag&gt;" in html and "<li>item</li>" in html


def test_slack_splits_long_reports_at_the_block_limit():
    text = "\n".join(f"line {i} " + "x" * 200 for i in range(8000))  # ~1.7 MB
    messages, notes = slack.messages_for(request({}, text))
    assert all(len(m["blocks"]) <= 50 for m in messages)
    assert all(m["blocks"][0]["type"] == "header" for m in messages)
    sections = [b for m in messages for b in m["blocks"][1:]]
    assert all(len(b["text"]["text"]) <= 3000 for b in sections)
    assert len(messages) == slack.MAX_MESSAGES and notes  # the rest is said, not sent


def test_slack_takes_upstream_blocks_as_they_are_and_converts_html():
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"b{i}"}} for i in range(60)]
    messages, notes = slack.messages_for(request({}, json.dumps(blocks)))
    assert [len(m["blocks"]) for m in messages] == [50, 12] and not notes
    messages, notes = slack.messages_for(request({}, "<p>Hi <b>you</b></p>"))
    assert messages[0]["blocks"][1]["text"]["text"] == "Hi *you*" and "html" in notes[0]


def test_teams_bounds_the_message_to_its_limit():
    payload, notes = teams.message_for(request({}, "y" * 100_000, url="https://x.example/r"))
    assert len(json.dumps(payload).encode()) <= teams.MAX_PAYLOAD_BYTES and notes
    card = payload["attachments"][0]["content"]
    assert card["actions"][0]["url"] == "https://x.example/r"


def test_splunk_size_limit_empties_lists_first():
    event = {"image": "alpine", "resources": [{"name": "p" * 50}] * 200, "digest": "sha"}
    body, notes = splunk.hec_event(request({"size-limit": 1000}, json.dumps(event)))
    sent = json.loads(body)
    assert sent["event"]["resources"] == [] and sent["event"]["image"] == "alpine" and notes
    assert len(json.dumps(sent["event"], separators=(",", ":"))) <= 1000


def test_email_recipients_expand_the_owner_placeholder():
    params = {"recipients": "a@x.example, <%application_scope_owner%>"}
    event = {"events": [{"application_scope_owners": ["o@x.example"]}, {}]}
    assert email.recipients_of(params, event) == ["a@x.example", "o@x.example"]
    message = email.build_message(request(params, "**hi**"), ["a@x.example"])
    assert message.get_body(("html",)).get_content().count("<b>hi</b>") == 1


def test_jira_labels_and_wiki():
    made = jira._Jira(
        jira.JiraAction(),
        request({"url": "https://x.atlassian.net", "project-key": "sec"}, "**b**", dedupe_key="k"),
    )
    fields = made.base_fields()
    assert made.cloud and fields["project"] == {"key": "SEC"}
    assert fields["labels"] == [jira.dedupe_label("k")] and fields["description"] == "*b*"


def test_nexus_iq_turns_a_cyclonedx_json_bom_into_xml():
    bom = {"bomFormat": "CycloneDX", "components": [{"name": "a<b", "version": "1"}]}
    xml = nexusiq.bom_xml(request({}, json.dumps(bom)))
    assert "<name>a&lt;b</name>" in xml and 'xmlns="http://cyclonedx.org/schema/bom/1.4"' in xml
    with pytest.raises(ActionPermanentError):
        nexusiq.bom_xml(request({}, "plain text"))


PARAMS = {
    "slack": {"url": "https://hooks.slack.com/services/T1/B1/secret"},
    "teams": {"url": "https://x.webhook.office.com/webhookb2/secret"},
    "email": {"host": "smtp.example", "recipients": ["a@x.example"]},
    "jira": {"url": "https://jira.example", "project-key": "SEC", "token": "t"},
    "webhook": {"url": "https://hooks.example/x"},
    "splunk": {"url": "https://splunk.example:8088", "token": "t"},
    "servicenow": {"instance": "dev1", "user": "u", "password": "p"},
    "pagerduty": {"pagerduty-routing-key": "k" * 32},
    "opsgenie": {"token": "t"},
    "nexusiq": {"url": "https://iq.example", "organization-id": "o"},
    "dependencytrack": {"url": "https://dt.example", "dependency-track-api-key": "k"},
    "stdout": {},
}


@pytest.mark.parametrize("kind", sorted(actions.NOTIFIERS))
async def test_every_notifier_describes_a_dry_run_without_sending(kind):
    bom = json.dumps({"bomFormat": "CycloneDX", "components": [{"name": "a", "version": "1"}]})
    text = bom if kind in ("nexusiq", "dependencytrack") else "**report**"
    async with actions.NOTIFIERS[kind]() as action:
        result = await action.execute(request(PARAMS[kind], text, title="app:1.0", dry_run=True))
    assert result.status == "dry_run" and result.detail
    assert "secret" not in json.dumps(result.detail)


def test_new_secret_keys_are_resolved_by_reference():
    params = {
        "pagerduty-routing-key": "$PD_KEY",
        "dependency-track-api-key": "${DT_KEY}",
        "password": "$PW",
        "url": "$HOOK",
    }
    env = {"PD_KEY": "pd-value", "DT_KEY": "dt-value", "PW": "pw-value", "HOOK": "https://h/x"}
    resolved = secrets.resolve(params, env)
    assert resolved.params == {
        "pagerduty-routing-key": "pd-value",
        "dependency-track-api-key": "dt-value",
        "password": "pw-value",
        "url": "https://h/x",
    }
    assert resolved.redact("sent pd-value and dt-value") == "sent [redacted] and [redacted]"


async def test_use_mx_delivers_to_each_domains_mx_without_auth(tmp_path, monkeypatch):
    async def mx_of(domain: str) -> str:
        assert domain == "corp.example"
        return "127.0.0.1"

    monkeypatch.setattr(email, "mx_host", mx_of)
    with mail_server(tmp_path, "u", "p", submission=False) as server:
        params = {
            "use-mx": True,
            "port": server.port,
            "user": "relay-user",
            "password": "relay-password",
            "sender": "postee@example.com",
            "recipients": ["a@corp.example", "b@corp.example"],
            "tls-verify": False,
        }
        async with email.EmailAction() as action:
            result = await action.execute(request(params, "<p>hi</p>", timeout_s=10))
        (delivered,) = await server.wait_for()
    assert result.status == "succeeded" and result.detail["servers"] == ["127.0.0.1"]
    assert delivered.recipients == ["a@corp.example", "b@corp.example"] and delivered.user is None
    assert delivered.message.get_body(("html",)).get_content().strip() == "<p>hi</p>"
