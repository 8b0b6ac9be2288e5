"""The vendor servers of the outputs' end-to-end tests, and the config that points one
action of every notifier type at them (tests/e2e/test_outputs_flow.py)."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

from tests.http_sink import Sink
from tests.vendors.base import VendorServer
from tests.vendors.data import DependencyTrackServer, NexusIqServer, SplunkServer
from tests.vendors.jira import JiraServer
from tests.vendors.slack import SlackServer
from tests.vendors.smtp import MailServer
from tests.vendors.teams import TeamsServer
from tests.vendors.tickets import OpsgenieServer, PagerDutyServer, ServiceNowServer

SECRETS = {
    "SLACK_HOOK": "",  # set once the Slack server has a port
    "SMTP_PASSWORD": f"smtp-{uuid.uuid4().hex[:12]}",
    "JIRA_API_TOKEN": f"jira-cloud-{uuid.uuid4().hex[:12]}",
    "JIRA_PAT": f"jira-pat-{uuid.uuid4().hex[:12]}",
    "SPLUNK_TOKEN": str(uuid.uuid4()),
    "SNOW_PASSWORD": f"snow-{uuid.uuid4().hex[:12]}",
    "PD_ROUTING_KEY": uuid.uuid4().hex,
    "OPSGENIE_KEY": str(uuid.uuid4()),
    "NEXUS_PASSWORD": f"nexus-{uuid.uuid4().hex[:12]}",
    "DTRACK_KEY": f"odt_{uuid.uuid4().hex}",
}


class Vendors:
    def __init__(self, directory: Path) -> None:
        self.slack = SlackServer()
        self.teams = TeamsServer()
        self.jira_cloud = JiraServer(
            cloud=True, user="bot@example.com", secret=SECRETS["JIRA_API_TOKEN"], projects={"SEC"}
        )
        self.jira_dc = JiraServer(
            cloud=False, user="postee", secret=SECRETS["JIRA_PAT"], projects={"SEC", "OPS"}
        )
        self.snow = ServiceNowServer(
            user="postee", password=SECRETS["SNOW_PASSWORD"], tables={"incident"}
        )
        self.pagerduty = PagerDutyServer()
        self.opsgenie = OpsgenieServer(key=SECRETS["OPSGENIE_KEY"])
        self.splunk = SplunkServer(token=SECRETS["SPLUNK_TOKEN"])
        self.nexus = NexusIqServer(
            user="admin", password=SECRETS["NEXUS_PASSWORD"], organization="org-1"
        )
        self.dtrack = DependencyTrackServer(key=SECRETS["DTRACK_KEY"])
        self.directory = directory
        self.webhook: Sink
        self.mail: MailServer

    def http_servers(self) -> list[VendorServer]:
        return [v for v in vars(self).values() if isinstance(v, VendorServer)]


def outputs_config(v: Vendors) -> str:
    return textwrap.dedent(f"""
    name: outputs-e2e
    aqua-server:
    routes:
      - {{name: slack-trivy, input: input.ArtifactName != "", template: trivy, actions: [slack]}}
      - name: slack-limited
        input: input.ArtifactName != ""
        template: trivy
        actions: [slack-rl]
      - name: teams-tracee
        input: input.SigMetadata.ID != ""
        template: tracee
        actions: [teams]
      - name: teams-operator
        input: input.kind == "VulnerabilityReport"
        template: trivy-operator
        actions: [teams-connector]
      - {{name: email-aqua, input: input.image != "", template: raw-html, actions: [email]}}
      - name: email-refused
        input: input.image != ""
        template: raw-html
        actions: [email-bad-password]
      - name: jira-operator
        input: input.kind == "VulnerabilityReport"
        template: trivy-operator
        actions: [jira-dc]
      - name: jira-dedupe
        input: input.ArtifactName != ""
        template: trivy
        actions: [jira-cloud]
        plugins:
          unique-message-props: [ArtifactName]
          unique-message-timeout: 1m
      - name: jira-refused
        input: input.ArtifactName != ""
        template: trivy
        actions: [jira-bad]
      - name: webhook-tracee
        input: input.SigMetadata.ID != ""
        template: raw-json
        actions: [webhook]
      - name: splunk-trivy
        input: input.ArtifactName != ""
        template: raw-json
        actions: [splunk]
      - name: snow-aqua
        input: input.image != ""
        template: aqua-incident
        actions: [servicenow]
      - name: pagerduty-tracee
        input: input.SigMetadata.ID != ""
        template: tracee
        actions: [pagerduty]
        plugins:
          unique-message-props: [SigMetadata.ID, Context.hostName]
      - name: opsgenie-tracee
        input: input.SigMetadata.ID != ""
        template: tracee
        actions: [opsgenie]
      - name: nexus-trivy
        input: input.ArtifactName != ""
        template: cyclonedx
        actions: [nexus]
      - name: dtrack-trivy
        input: input.ArtifactName != ""
        template: cyclonedx
        actions: [dtrack]
      - name: stdout-tracee
        input: input.SigMetadata.ID != ""
        template: raw-json
        actions: [stdout]
    templates:
      - {{name: trivy, rego-package: postee.trivy}}
      - {{name: trivy-operator, rego-package: postee.trivyoperator}}
      - {{name: tracee, rego-package: postee.tracee}}
      - {{name: raw-html, rego-package: postee.rawmessage.html}}
      - {{name: raw-json, rego-package: postee.rawmessage.json}}
      - {{name: cyclonedx, rego-package: postee.trivy.cyclonedx}}
      - name: aqua-incident
        url:
        body: |
          package postee.test.aqua
          import rego.v1
          title := concat("", ["Aqua: ", input.image, " is not compliant"])
          result := concat("", ["**Image** ", input.image, " from ", input.registry])
          result_severity := 1
          result_category := "Security incident"
          result_summary := concat(" ", ["Non-compliant image", input.image])
    actions:
      - {{name: slack, type: slack, enable: true, url: $SLACK_HOOK, retry-backoff: 0.05}}
      - name: slack-rl
        type: Slack
        enable: true
        url: "{v.slack.url("C2")}"
        retry-backoff: 0.05
      - {{name: slack-off, type: slack, enable: false, url: }}
      - {{name: teams, type: teams, enable: true, url: "{v.teams.workflow_url()}"}}
      - {{name: teams-connector, type: teams, enable: true, url: "{v.teams.connector_url()}"}}
      - name: email
        type: email
        enable: true
        host: 127.0.0.1
        port: {v.mail.port}
        user: mailer@example.com
        password: $SMTP_PASSWORD
        sender: postee@example.com
        recipients: [secops@example.com, "<%application_scope_owner%>"]
        tls-verify: false
        timeout: 1500ms
      - name: email-bad-password
        type: email
        enable: true
        host: 127.0.0.1
        port: {v.mail.port}
        user: mailer@example.com
        password: not-the-password
        recipients: [secops@example.com]
        tls-verify: false
      - name: jira-dc
        type: jira
        enable: true
        url: {v.jira_dc.base_url}
        token: $JIRA_PAT
        project-key: sec
        issuetype: Bug
        priority: High
        assignee: [jdoe]
        labels: [trivy-operator, postee]
        board: SEC board
        unknowns: {{Team: Security, Risk score: "7"}}
        retry-backoff: 0.05
      - &jira-cloud
        name: jira-cloud
        type: jira
        enable: true
        url: {v.jira_cloud.base_url}
        cloud: true
        user: bot@example.com
        password: $JIRA_API_TOKEN
        project-key: SEC
        assignee: alice@example.com
        retry-backoff: 0.05
      - <<: *jira-cloud  # the same Jira, asked for an issue type it does not have
        name: jira-bad
        issuetype: Epicc
      - name: webhook
        type: webhook
        enable: true
        url: "{v.webhook.base_url}/hook"
        timeout: 2h45m
      - name: splunk
        type: splunk
        enable: true
        url: {v.splunk.base_url}
        token: $SPLUNK_TOKEN
        size-limit: 4000
        retry-backoff: 0.05
      - name: servicenow
        type: serviceNow
        enable: true
        user: postee
        password: $SNOW_PASSWORD
        instance: {v.snow.base_url}
      - name: pagerduty
        type: pagerDuty
        enable: true
        url: {v.pagerduty.base_url}/v2/enqueue
        pagerduty-auth-token: unused-by-the-events-api
        pagerduty-routing-key: $PD_ROUTING_KEY
      - name: opsgenie
        type: opsgenie
        enable: true
        url: {v.opsgenie.base_url}
        token: $OPSGENIE_KEY
        user: postee
        assignee: [oncall@example.com]
        tags: security, tracee
        priority: P2
      - name: nexus
        type: nexusIq
        enable: true
        url: {v.nexus.base_url}
        user: admin
        password: $NEXUS_PASSWORD
        organization-id: org-1
      - name: dtrack
        type: dependencytrack
        enable: true
        url: {v.dtrack.base_url}
        dependency-track-api-key: $DTRACK_KEY
      - {{name: stdout, type: stdout, enable: true}}
    """)
