"""kubernetes: label, annotate, scale down or remove workloads (Postee's kubernetes action,
doing the whole job).

Keys as upstream: `kube-namespace`, `kube-config-file` (else `$KUBECONFIG`, else the
in-cluster service account), `kube-label-selector`, `kube-actions: {labels, annotations}`.
Beyond upstream:

- `kube-target`: `selector` (default; `kube-resource` pods, deployments, statefulsets,
  daemonsets or replicasets), `event-workload` (the workload a trivy-operator/Starboard
  report or Tracee event is about, up to its top-level controller) or `image` (pods running
  `kube-image`, by default the event's image, plus their top-level controllers);
- `kube-actions.delete-pods` and `kube-actions.scale-to-zero`;
- `dry-run: true` (or a replay in dry-run mode): the API server's dry run, nothing changes;
- `timeout` (default 30 s), `retries`, `retry-backoff` (applied by the executor).

Every value takes `event.input.<path>` tokens. Labels and annotations are checked against
Kubernetes' rules before any call. The outcome lists every object found, with what changed
(or, in a dry run, what would). An API refusal (403, 404, 422...) is a `failed` result with
the API's status, reason and message; 409, 429, 5xx and connection errors are retried.
Changes are made in order labels/annotations, then scale, then deletes, and stop at the
first refusal; the outcome shows how far they got. See docs/kubernetes.md.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import yaml
from kubernetes_asyncio import client, config

from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    ActionTemporaryError,
)
from actions.kube_cluster import KINDS, CallFailed, Cluster, Found, Ref, Targets, find
from actions.kube_plan import Plan, plan

__all__ = ["KubernetesAction"]


class KubernetesAction(Action):
    type = "kubernetes"
    timeout_s = 30.0
    max_attempts = 4
    concurrency = 8

    def __init__(self) -> None:
        #: One long-lived client per kube-config file; None: $KUBECONFIG or in-cluster.
        self._clients: dict[str | None, client.ApiClient] = {}
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        async with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for api in clients:
            await api.close()

    async def client_for(self, config_file: str | None) -> client.ApiClient:
        async with self._lock:
            if config_file not in self._clients:
                self._clients[config_file] = await _new_client(config_file)
            return self._clients[config_file]

    async def execute(self, request: ActionRequest) -> ActionResult:
        the_plan = plan(request)  # every refusal of ours comes before the first call
        api = await self.client_for(the_plan.config_file)
        cluster = Cluster(api, dry_run=the_plan.dry_run, timeout_s=request.timeout_s)
        report = _Report(the_plan, cluster.notes)
        try:
            async with asyncio.timeout(request.timeout_s):
                targets = await find(cluster, the_plan)
                report.add_targets(targets)
                await _apply(cluster, the_plan, targets, report)
        except CallFailed as exc:
            detail = report.detail(error=exc.summary())
            if exc.temporary:
                raise ActionTemporaryError(
                    str(exc), retry_after_s=exc.retry_after_s, detail=detail
                ) from None
            return ActionResult("failed", detail, str(exc))
        except TimeoutError:
            raise ActionTemporaryError(
                f"timed out after {request.timeout_s:g}s", detail=report.detail()
            ) from None
        return ActionResult("dry_run" if the_plan.dry_run else "succeeded", report.detail())


async def _new_client(config_file: str | None) -> client.ApiClient:
    configuration = client.Configuration()
    files = config_file or os.environ.get("KUBECONFIG")
    source = files or "the in-cluster service account"
    try:
        if files:
            _check_readable(files)
            await config.load_kube_config(
                config_file=files, client_configuration=configuration, persist_config=False
            )
        else:
            incluster: Any = config.load_incluster_config  # untyped in kubernetes-asyncio
            incluster(client_configuration=configuration)
    except (config.ConfigException, OSError, yaml.YAMLError) as exc:
        raise ActionPermanentError(f"Kubernetes configuration from {source}: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # not a kubeconfig
        raise ActionPermanentError(
            f"Kubernetes configuration from {source}: not a kubeconfig ({exc!r})"
        ) from None
    return client.ApiClient(configuration=configuration)


def _check_readable(files: str) -> None:
    """kubernetes-asyncio only logs a missing file, then fails with a misleading message."""
    if not any(os.path.isfile(f) for f in files.split(os.pathsep) if f):  # as kubectl, one will do
        raise ActionPermanentError(f"kubeconfig not found: {files}")


async def _apply(cluster: Cluster, plan: Plan, targets: Targets, report: _Report) -> None:
    metadata = {
        key: dict(values)
        for key, values in (("labels", plan.labels), ("annotations", plan.annotations))
        if values
    }
    if metadata:
        for item in targets.marked:
            await cluster.patch_metadata(item.ref, metadata)
            for key, values in metadata.items():
                report.change(item, key, values)
                replaced = _replaced(getattr(item.obj.metadata, key) or {}, values)
                if replaced:
                    report.change(item, f"{key}_replaced", replaced)
    if plan.scale_to_zero:
        for item in targets.controllers:
            if not KINDS[item.ref.kind].scalable:
                report.skip(item, f"a {item.ref.kind} has no replicas to scale")
                continue
            before = item.obj.spec.replicas
            await cluster.scale_to_zero(item.ref)
            report.change(item, "replicas", {"from": 1 if before is None else before, "to": 0})
    if plan.delete_pods:
        for item in targets.pods:
            gone = await cluster.delete_pod(item.ref, item.obj.metadata.uid)
            report.change(item, "deleted", True if gone else "already gone")


def _replaced(current: dict[str, str], wanted: dict[str, str]) -> dict[str, str]:
    """The values that `wanted` overwrites, for the record."""
    return {k: current[k] for k in wanted if k in current and current[k] != wanted[k]}


class _Report:
    """The outcome's detail, built as the action goes, so a failure shows how far it got."""

    def __init__(self, plan: Plan, notes: list[str]) -> None:
        self.summary = plan.summary()
        self.objects: dict[Ref, dict[str, Any]] = {}
        self.skipped: list[dict[str, str]] = []
        self.notes = notes  #: the cluster's, filled as it walks

    def _entry(self, item: Found) -> dict[str, Any]:
        if item.ref not in self.objects:
            entry: dict[str, Any] = {
                "kind": item.ref.kind,
                "namespace": item.ref.namespace,
                "name": item.ref.name,
                "found": item.found,
            }
            if item.via:
                entry["via"] = list(item.via)
            self.objects[item.ref] = {**entry, "changes": {}}
        return self.objects[item.ref]

    def add_targets(self, targets: Targets) -> None:
        for item in (*targets.marked, *targets.controllers, *targets.pods):
            self._entry(item)

    def change(self, item: Found, what: str, value: Any) -> None:
        self._entry(item)["changes"][what] = value

    def skip(self, item: Found, reason: str) -> None:
        self._entry(item)
        self.skipped.append({"object": str(item.ref), "reason": reason})

    def detail(self, error: dict[str, Any] | None = None) -> dict[str, Any]:
        objects = list(self.objects.values())
        detail: dict[str, Any] = {
            **self.summary,
            "objects": objects,
            "touched": sum(1 for o in objects if o["changes"]),
        }
        if self.skipped:
            detail["skipped"] = self.skipped
        if self.notes:
            detail["notes"] = list(self.notes)
        if error is not None:
            detail["error"] = error
        return detail
