"""Action types, by Postee's `type` name. An explicit registry: no import side effects."""

from actions.base import Action
from actions.docker import DockerAction
from actions.exec import ExecAction
from actions.http import HttpAction
from actions.kubernetes import KubernetesAction

__all__ = ["REGISTRY"]

REGISTRY: dict[str, type[Action]] = {
    ExecAction.type: ExecAction,
    HttpAction.type: HttpAction,
    DockerAction.type: DockerAction,
    KubernetesAction.type: KubernetesAction,
}
