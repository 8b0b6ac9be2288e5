"""Config parity for Postee's outputs: every upstream action type loads, empty values and
Go durations are read as upstream reads them, disabled actions stay idle, and `postee
validate` warns (exit 0) where upstream would silently misbehave."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

import actions
from streams import config
from tests.unit.test_config import run_cli

REPO = Path(__file__).resolve().parents[2]

UPSTREAM = """
name: tenant
aqua-server:
max-db-size: 1000MB
db-verify-interval: 1
routes:
  - name: stdout
    actions: [stdout]
    template: raw-json
  - name: route1
    input: contains(input.image, "alpine")
    actions: [my-slack, my-teams, my-email, my-jira, my-webhook, my-splunk]
    template: raw-html
    plugins:
      aggregate-message-number:
      unique-message-props: ["digest", "image", "registry"]
      unique-message-timeout:
  - name: tickets
    actions: [my-servicenow, my-pagerduty, my-opsgenie, my-nexus-iq, my-dependencytrack]
    template: raw-json
templates:
  - name: raw-html
    rego-package: postee.rawmessage.html
  - name: raw-json
    rego-package: postee.rawmessage.json
  - name: custom-email
    url:
    rego-package: postee.rawmessage.html
rules:
  - name: Initial Access
actions:
  - {name: stdout, type: stdout, enable: true}
  - name: my-slack
    type: slack
    enable: false
    url:
  - {name: my-teams, type: teams, enable: true, url: "https://example.webhook.office.com/webhookb2/x"}
  - name: my-email
    type: email
    enable: true
    user:
    password:
    host: smtp.gmail.com
    port: 587
    sender: johndoe@gmail.com
    recipients: ["john@yahoo.com"]
  - {name: my-email-mx, type: email, enable: true, use-mx: true, recipients: [a@b.example]}
  - name: my-jira
    type: jira
    enable: true
    url: https://johndoe.atlassian.net
    user: johndoe@gmail.com
    password: $JIRA_TOKEN
    token:
    project-key: SEC
    tls-verify: false
    board:
    labels: ["label1", "label2"]
    issuetype:
    priority:
    assignee:
  - name: my-servicenow
    type: serviceNow
    enable: true
    user: admin
    password: $SNOW_PASSWORD
    instance: dev12345
    board:
  - {name: my-webhook, type: webhook, enable: true, url: "https://hooks.example/x", timeout: 1500ms}
  - name: my-splunk
    type: splunk
    enable: true
    url: http://localhost:8088
    token: $SPLUNK_TOKEN
    size-limit: 10000
    tls-verify: false
  - name: my-nexus-iq
    type: nexusIq
    enable: true
    user: admin
    password: $NEXUS_PASSWORD
    url: https://nexus.example
    organization-id: 222de33e8005408a844c12eab952c9b0
  - name: my-dependencytrack
    type: dependencytrack
    enable: true
    url: https://dtrack.example
    dependency-track-api-key: $DTRACK_KEY
  - name: my-opsgenie
    type: opsgenie
    enable: true
    token: $OPSGENIE_KEY
    user:
    assignee:
    recipients:
    tags:
    priority-alias: P2
  - name: my-pagerduty
    type: pagerduty
    enable: true
    pagerduty-auth-token: $PD_TOKEN
    pagerduty-routing-key: $PD_ROUTING_KEY
  - {name: my-exec, type: exec, enable: true, exec-script: "echo $POSTEE_EVENT", timeout: 2h45m}
  - {name: my-http, type: http, enable: true, url: "https://example.com", timeout: 1.5s}
  - name: my-k8s
    type: kubernetes
    enable: false
    kube-namespace:
  - {name: my-docker, type: docker, enable: true, docker-image-name: "alpine:3.20"}
  - {name: my-security-hub, type: awssecurityhub, enable: false}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_every_upstream_action_type_is_registered():
    upstream = {"slack", "teams", "email", "jira", "webhook", "splunk", "servicenow"}
    upstream |= {"pagerduty", "opsgenie", "nexusiq", "dependencytrack", "stdout"}
    upstream |= {"exec", "http", "kubernetes", "docker"}
    assert upstream <= set(actions.REGISTRY)
    assert set(actions.NOTIFIERS).isdisjoint(actions.RESPONDERS)


def test_command_schema_knows_every_registered_type():
    schema = json.loads((REPO / "schemas" / "command.schema.json").read_text())
    assert set(schema["properties"]["type"]["enum"]) == set(actions.REGISTRY)


def test_upstream_config_loads_with_warnings(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        cfg = config.load(write(tmp_path, UPSTREAM))
    assert cfg.actions["my-servicenow"].type == "servicenow"
    assert cfg.actions["my-nexus-iq"].type == "nexusiq"
    assert cfg.actions["my-slack"].enable is False and "url" not in cfg.actions["my-slack"].params
    assert "board" not in cfg.actions["my-jira"].params  # empty: not given
    assert cfg.templates["custom-email"].url is None
    route = cfg.route("route1")
    assert route is not None and route.plugins.unique_message_timeout_s is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("key 'aqua-server' is empty" in m for m in messages)
    assert any("template 'custom-email': key 'url' is empty" in m for m in messages)
    assert any("awssecurityhub" in m and "disabled" in m for m in messages)
    assert any("action 'my-slack' is not enabled" in m for m in messages)
    assert not any("my-slack': key 'url'" in m for m in messages)  # a disabled action: quiet


def test_validate_accepts_the_upstream_config_with_warnings_only(tmp_path):
    result = run_cli("validate", str(write(tmp_path, UPSTREAM)))
    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower()
    assert "aqua-server" in result.stderr and "ok" in result.stdout
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines())


def test_enabled_action_missing_its_keys_is_an_error(tmp_path):
    text = UPSTREAM.replace("    enable: false\n    url:\n", "    enable: true\n    url:\n", 1)
    with pytest.raises(config.ConfigErrors) as caught:
        config.load(write(tmp_path, text))
    (err,) = caught.value.errors
    assert err.where == "action 'my-slack'" and "url" in err.message


def test_unknown_keys_of_outputs_warn(tmp_path, caplog):
    text = UPSTREAM.replace("    size-limit: 10000\n", "    size-limit: 10000\n    colour: red\n")
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, text))
    assert any("action 'my-splunk': unknown key 'colour'" in r.getMessage() for r in caplog.records)


def test_teams_workflows_type_is_teams(tmp_path):
    text = UPSTREAM.replace("type: teams,", "type: teamsWorkflows,")
    assert config.load(write(tmp_path, text)).actions["my-teams"].type == "teams"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1500ms", 1.5),
        ("2h45m", 9900),
        ("1.5s", 1.5),
        ("300us", 0.0003),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("90", 90),
        (2.5, 2.5),
    ],
)
def test_go_durations(text, seconds):
    assert config.parse_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ms", "5x", "1h-2m", "-3s", "1.2.3s"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        config.parse_duration_s(text)


def test_plugin_windows_round_up_to_whole_seconds(tmp_path):
    text = UPSTREAM.replace(
        "      unique-message-timeout:\n", "      unique-message-timeout: 1500ms\n"
    )
    route = config.load(write(tmp_path, text)).route("route1")
    assert route is not None and route.plugins.unique_message_timeout_s == 2


def test_validate_warns_about_html_to_slack(tmp_path):
    text = """
    routes:
      - {name: r, template: html, actions: [chat, mail]}
    templates:
      - {name: html, rego-package: postee.rawmessage.html}
    actions:
      - {name: chat, type: slack, enable: true, url: "https://hooks.slack.com/services/T/B/x"}
      - {name: mail, type: email, enable: true, host: h, recipients: [a@b.example]}
    """
    result = run_cli("validate", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    (warning,) = [line for line in result.stderr.splitlines() if "gives" in line]
    assert "route 'r': template 'html' gives HTML" in warning and "slack action 'chat'" in warning
