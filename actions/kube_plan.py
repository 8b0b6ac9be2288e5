"""What a kubernetes action is asked to do, worked out before any API call.

`plan(request)` reads the action's keys, replaces `event.input.<path>` tokens, finds in
the event the workload or image it is about, and validates everything Kubernetes would
refuse (label keys and values, annotation keys, namespace and object names). Whatever is
wrong raises `ActionPermanentError` here, so a bad config or event never reaches the
cluster half-applied. Pure: no I/O, no kubernetes-asyncio.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from actions.base import ActionPermanentError, ActionRequest
from actions.kube_images import parse_image
from actions.substitution import lookup, substitute

__all__ = [
    "RESOURCES",
    "TARGETS",
    "WORKLOAD_KINDS",
    "Plan",
    "Workload",
    "default_images",
    "event_workload",
    "label_key_problem",
    "label_value_problem",
    "plan",
]

TARGETS = ("selector", "event-workload", "image")
#: `kube-resource` values → kinds.
RESOURCES = {
    "pods": "Pod",
    "deployments": "Deployment",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "replicasets": "ReplicaSet",
}
#: Kinds an event may name and an ownerReferences walk may pass through.
WORKLOAD_KINDS = ("Pod", "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
ALL_NAMESPACES = "*"
MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all annotations of an object

_LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
#: Kinds of the report label prefixes of trivy-operator, then of its predecessor Starboard.
_REPORT_PREFIXES = ("trivy-operator.resource.", "starboard.resource.")


@dataclass(frozen=True)
class Workload:
    """The object an event is about, as the event names it."""

    kind: str
    namespace: str
    name: str
    source: str  #: where in the event it was found

    def summary(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "from": self.source,
        }


@dataclass(frozen=True)
class Plan:
    target: str  #: one of TARGETS
    namespace: str | None  #: "*" for all; None: the event's own (event-workload only)
    config_file: str | None  #: None: $KUBECONFIG, else the in-cluster service account
    selector: str | None = None
    kind: str = "Pod"  #: the kind `kube-resource` selects
    workload: Workload | None = None
    images: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    delete_pods: bool = False
    scale_to_zero: bool = False
    dry_run: bool = False
    unresolved: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"target": self.target, "namespace": self.namespace}
        if self.target == "selector":
            summary |= {"selector": self.selector, "resource": self.kind}
        if self.workload is not None:
            summary["workload"] = self.workload.summary()
        if self.images:
            summary["images"] = list(self.images)
        summary |= {
            "requested": {
                "labels": dict(self.labels),
                "annotations": dict(self.annotations),
                "delete_pods": self.delete_pods,
                "scale_to_zero": self.scale_to_zero,
            },
            "dry_run": self.dry_run,
        }
        if self.unresolved:
            summary["unresolved_tokens"] = list(self.unresolved)
        return summary


def plan(request: ActionRequest) -> Plan:
    """The action's keys and the event, resolved and validated."""
    return _Planner(request).build()


class _Planner:
    def __init__(self, request: ActionRequest) -> None:
        self.params, self.event = request.params, request.event
        self.request_dry_run = request.dry_run
        self.unresolved: list[str] = []

    def text(self, value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        result = substitute(str(value), self.event)
        self.unresolved += result.unresolved
        return result.text.strip()

    def flag(self, value: object, key: str) -> bool:
        if value is None or isinstance(value, bool):
            return bool(value)
        text = self.text(value).lower()
        if text not in ("true", "false"):
            raise ActionPermanentError(f"{key}: expected true or false, got {text!r}")
        return text == "true"

    def build(self) -> Plan:
        params = self.params
        target = self.text(params.get("kube-target") or "selector")
        if target not in TARGETS:
            raise ActionPermanentError(
                f"kube-target must be one of {', '.join(TARGETS)}: {target!r}"
            )
        raw_actions = params.get("kube-actions") or {}
        if not isinstance(raw_actions, Mapping):
            raise ActionPermanentError("kube-actions must be a mapping")
        config_file = (
            self.text(params["kube-config-file"]) if params.get("kube-config-file") else ""
        )
        namespace = self.text(params["kube-namespace"]) if params.get("kube-namespace") else None
        if namespace is not None and namespace != ALL_NAMESPACES:
            _check_name(namespace, "kube-namespace", dns_label=True)
        fields: dict[str, Any] = {}
        if target == "selector":
            fields = self._selector(namespace)
        elif target == "event-workload":
            fields = {"workload": self._workload(namespace)}
        else:
            if not namespace:
                raise ActionPermanentError('kube-target image needs kube-namespace (or "*")')
            fields = {"images": self._images()}
        return Plan(
            target=target,
            namespace=namespace,
            config_file=os.path.expanduser(config_file) if config_file else None,
            labels=self._labels(raw_actions.get("labels")),
            annotations=self._annotations(raw_actions.get("annotations")),
            delete_pods=self.flag(raw_actions.get("delete-pods"), "kube-actions.delete-pods"),
            scale_to_zero=self.flag(raw_actions.get("scale-to-zero"), "kube-actions.scale-to-zero"),
            dry_run=self.request_dry_run or self.flag(params.get("dry-run"), "dry-run"),
            unresolved=tuple(self.unresolved),
            **fields,
        )

    def _selector(self, namespace: str | None) -> dict[str, Any]:
        if not namespace:
            raise ActionPermanentError("kube-target selector needs kube-namespace")
        selector = self.text(self.params.get("kube-label-selector") or "")
        if not selector:
            raise ActionPermanentError("kube-target selector needs kube-label-selector")
        resource = self.text(self.params.get("kube-resource") or "pods").lower()
        if resource not in RESOURCES:
            raise ActionPermanentError(
                f"kube-resource must be one of {', '.join(RESOURCES)}: {resource!r}"
            )
        return {"selector": selector, "kind": RESOURCES[resource]}

    def _workload(self, namespace: str | None) -> Workload:
        found = event_workload(self.event)
        if found is None:
            raise ActionPermanentError(
                "kube-target event-workload: the event names no workload (no trivy-operator or"
                " Starboard resource labels, no Tracee pod fields)"
            )
        if not found.namespace:
            if not namespace or namespace == ALL_NAMESPACES:
                raise ActionPermanentError(
                    f"the event names {found.kind} {found.name!r} but no namespace,"
                    " and kube-namespace does not give one"
                )
            found = Workload(found.kind, namespace, found.name, found.source)
        if namespace and namespace not in (ALL_NAMESPACES, found.namespace):
            raise ActionPermanentError(
                f"the event's {found.kind} {found.namespace}/{found.name} is outside"
                f" kube-namespace {namespace!r}"
            )
        if found.kind not in WORKLOAD_KINDS:
            raise ActionPermanentError(
                f"the event names a {found.kind!r}; supported kinds: {', '.join(WORKLOAD_KINDS)}"
            )
        _check_name(found.namespace, "the event's namespace", dns_label=True)
        _check_name(found.name, f"the event's {found.kind} name")
        return found

    def _images(self) -> tuple[str, ...]:
        given = self.params.get("kube-image")
        images = (self.text(given),) if given else default_images(self.event)
        images = tuple(i for i in images if i)
        if not images:
            raise ActionPermanentError(
                "kube-target image: no kube-image, and the event names no image"
                " (trivy-operator report artifact, Trivy image ArtifactName,"
                " Tracee container image)"
            )
        for image in images:
            parse_image(image)  # refuses what is not an image reference
        return images

    def _labels(self, raw: object) -> dict[str, str]:
        labels = self._mapping(raw, "labels")
        for key, value in labels.items():
            problem = label_key_problem(key) or label_value_problem(value)
            if problem:
                raise ActionPermanentError(f"label {key}={value!r} is not valid: {problem}")
        return labels

    def _annotations(self, raw: object) -> dict[str, str]:
        annotations = self._mapping(raw, "annotations")
        for key in annotations:
            problem = label_key_problem(key)
            if problem:
                raise ActionPermanentError(f"annotation key {key!r} is not valid: {problem}")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
        if size > MAX_ANNOTATIONS_BYTES:
            raise ActionPermanentError(
                f"annotations total {size} bytes, over Kubernetes' {MAX_ANNOTATIONS_BYTES}"
            )
        return annotations

    def _mapping(self, raw: object, what: str) -> dict[str, str]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise ActionPermanentError(f"kube-actions.{what} must be a mapping")
        return {str(k): "" if v is None else self.text(v) for k, v in raw.items()}


def label_key_problem(key: str) -> str | None:
    """Why Kubernetes would refuse `key` as a label or annotation key, or None."""
    if key.count("/") > 1:
        return "a key has at most one '/'"
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' is empty"
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return "the prefix must be a DNS subdomain (lower case, at most 253 characters)"
    if not name:
        return "the name part is empty"
    if len(name) > 63:
        return "the name part is longer than 63 characters"
    if not _LABEL_NAME.fullmatch(name):
        return (
            "the name part must be alphanumerics, '-', '_' or '.', beginning and ending"
            " with an alphanumeric"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why Kubernetes would refuse `value` as a label value, or None (empty is allowed)."""
    if len(value) > 63:
        return "a label value has at most 63 characters"
    if value and not _LABEL_NAME.fullmatch(value):
        return (
            "a label value must be alphanumerics, '-', '_' or '.', beginning and ending with"
            " an alphanumeric"
        )
    return None


def _check_name(name: str, what: str, *, dns_label: bool = False) -> None:
    pattern, limit = (_DNS_LABEL, 63) if dns_label else (_DNS_SUBDOMAIN, 253)
    if not name or len(name) > limit or not pattern.fullmatch(name):
        raise ActionPermanentError(f"{what} is not a valid Kubernetes name: {name!r}")


# --- what the event is about -------------------------------------------------------------


def event_workload(event: Mapping[str, Any]) -> Workload | None:
    """The workload of a trivy-operator/Starboard report (its resource labels, or
    annotations holding the same keys) or of a Tracee event (its pod fields)."""
    metadata = event.get("metadata")
    if isinstance(metadata, Mapping):
        for prefix in _REPORT_PREFIXES:
            for where in ("annotations", "labels"):
                marks = metadata.get(where)
                if not isinstance(marks, Mapping):
                    continue
                kind, name = marks.get(prefix + "kind"), marks.get(prefix + "name")
                if isinstance(kind, str) and kind and isinstance(name, str) and name:
                    namespace = marks.get(prefix + "namespace") or metadata.get("namespace")
                    source = f"report {where} {prefix}*"
                    return Workload(kind, str(namespace or ""), name, source)
    for path in ("Context", "kubernetes"):  # Tracee: rules' events, then newer event format
        pod, namespace = lookup(event, f"{path}.podName"), lookup(event, f"{path}.podNamespace")
        if isinstance(pod, str) and pod:
            return Workload("Pod", str(namespace or ""), pod, f"Tracee {path}.podName")
    return None


def default_images(event: Mapping[str, Any]) -> tuple[str, ...]:
    """The images an event is about: a trivy-operator report's registry/repository:tag
    (and @digest), a Trivy image report's ArtifactName (and RepoDigests), or the
    container image of a Tracee event."""
    artifact = lookup(event, "report.artifact")
    if isinstance(artifact, Mapping) and artifact.get("repository"):
        server = lookup(event, "report.registry.server")
        base = f"{server}/{artifact['repository']}" if server else str(artifact["repository"])
        images = [f"{base}:{artifact['tag']}"] if artifact.get("tag") else []
        if artifact.get("digest"):
            images.append(f"{base}@{artifact['digest']}")
        return tuple(images or [base])
    name = event.get("ArtifactName")
    if isinstance(name, str) and name and event.get("ArtifactType") in (None, "container_image"):
        digests = lookup(event, "Metadata.RepoDigests")
        extra = [d for d in digests if isinstance(d, str)] if isinstance(digests, list) else []
        return (name, *extra)
    for path in ("Context.containerImage", "container.image"):
        image = lookup(event, path)
        if isinstance(image, str) and image:
            return (image,)
    return ()
