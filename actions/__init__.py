"""Action types, by Postee's `type` name (lower case). An explicit registry: no import
side effects. Responders change things; notifiers (`actions.notify`) tell."""

from actions.base import Action
from actions.docker import DockerAction
from actions.exec import ExecAction
from actions.http import HttpAction
from actions.kubernetes import KubernetesAction
from actions.notify.dependencytrack import DependencyTrackAction
from actions.notify.email import EmailAction
from actions.notify.jira import JiraAction
from actions.notify.nexusiq import NexusIqAction
from actions.notify.opsgenie import OpsgenieAction
from actions.notify.pagerduty import PagerDutyAction
from actions.notify.servicenow import ServiceNowAction
from actions.notify.slack import SlackAction
from actions.notify.splunk import SplunkAction
from actions.notify.stdout import StdoutAction
from actions.notify.teams import TeamsAction
from actions.notify.webhook import WebhookAction

__all__ = ["NOTIFIERS", "REGISTRY", "RESPONDERS"]

RESPONDERS: dict[str, type[Action]] = {
    ExecAction.type: ExecAction,
    HttpAction.type: HttpAction,
    DockerAction.type: DockerAction,
    KubernetesAction.type: KubernetesAction,
}

NOTIFIERS: dict[str, type[Action]] = {
    SlackAction.type: SlackAction,
    TeamsAction.type: TeamsAction,
    EmailAction.type: EmailAction,
    JiraAction.type: JiraAction,
    WebhookAction.type: WebhookAction,
    SplunkAction.type: SplunkAction,
    ServiceNowAction.type: ServiceNowAction,
    PagerDutyAction.type: PagerDutyAction,
    OpsgenieAction.type: OpsgenieAction,
    NexusIqAction.type: NexusIqAction,
    DependencyTrackAction.type: DependencyTrackAction,
    StdoutAction.type: StdoutAction,
}

REGISTRY: dict[str, type[Action]] = {**RESPONDERS, **NOTIFIERS}
