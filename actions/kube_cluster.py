"""The Kubernetes API side of the kubernetes action: reading, walking, changing objects.

`Cluster` wraps one kubernetes-asyncio `ApiClient` for one command. Reads are cached for
that command; writes carry `dryRun=All` when the plan is a dry run, so the API server
validates and admits them but persists nothing. Every failed call becomes `CallFailed`,
which says what was being done, the API's status, reason and message, and whether
another attempt may help (409, 429, 5xx, connection errors).

`find(cluster, plan)` turns a `Plan` into the objects to mark, the pods to delete and the
top-level controllers to scale, walking `ownerReferences` Pod → ReplicaSet → Deployment
(Job → CronJob) as Kubernetes' garbage collector reads them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from actions.base import ActionPermanentError
from actions.kube_images import ImageRef, parse_image
from actions.kube_plan import WORKLOAD_KINDS, Plan

__all__ = ["KINDS", "CallFailed", "Cluster", "Found", "Kind", "Ref", "Targets", "find"]

T = TypeVar("T")
PAGE_SIZE = 500
#: Pod → ReplicaSet → Deployment is 2 steps; Pod → Job → CronJob too. Stop runaway chains.
MAX_OWNER_DEPTH = 8
MAX_RETRY_AFTER_S = 300.0


@dataclass(frozen=True)
class Kind:
    name: str
    group: str  #: API group, "" for the core group
    api: type[Any]
    snake: str  #: as in the client's method names: `patch_namespaced_<snake>`
    scalable: bool = False  #: has a /scale subresource that scale-to-zero uses


KINDS = {
    kind.name: kind
    for kind in (
        Kind("Pod", "", client.CoreV1Api, "pod"),
        Kind("ReplicaSet", "apps", client.AppsV1Api, "replica_set", scalable=True),
        Kind("Deployment", "apps", client.AppsV1Api, "deployment", scalable=True),
        Kind("StatefulSet", "apps", client.AppsV1Api, "stateful_set", scalable=True),
        Kind("DaemonSet", "apps", client.AppsV1Api, "daemon_set"),
        Kind("Job", "batch", client.BatchV1Api, "job"),
        Kind("CronJob", "batch", client.BatchV1Api, "cron_job"),
    )
}
assert set(KINDS) == set(WORKLOAD_KINDS)


class Ref(NamedTuple):
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


class CallFailed(Exception):
    """One API call failed; `temporary` says whether another attempt may succeed."""

    def __init__(
        self,
        operation: str,
        status: int | None,
        reason: str,
        message: str,
        *,
        temporary: bool,
        retry_after_s: float | None = None,
    ) -> None:
        code = f"{status} " if status else ""
        super().__init__(f"{operation}: Kubernetes API {code}{reason}: {message}")
        self.operation, self.status, self.reason, self.message = operation, status, reason, message
        self.temporary, self.retry_after_s = temporary, retry_after_s

    def summary(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
        }

    @classmethod
    def from_api(cls, operation: str, exc: ApiException) -> CallFailed:
        status = int(exc.status or 0)
        text: Any = exc.body
        reason, message = str(exc.reason or ""), str(text or exc.reason or "")
        try:  # the API server answers with a Status object
            body = json.loads(text)
            reason, message = str(body.get("reason") or reason), str(body.get("message") or message)
        except (TypeError, ValueError, AttributeError):
            pass
        headers: Any = exc.headers or {}
        retry_after = str(headers.get("Retry-After") or "")
        return cls(
            operation,
            status,
            reason,
            message,
            temporary=status in (409, 429) or status >= 500,
            retry_after_s=min(float(retry_after), MAX_RETRY_AFTER_S)
            if retry_after.isdigit()
            else None,
        )


class Cluster:
    def __init__(self, api: client.ApiClient, *, dry_run: bool, timeout_s: float) -> None:
        self.api, self.timeout_s = api, timeout_s
        #: Extra arguments of every write: the API server's dry run, and our time bound.
        self.write_options: dict[str, Any] = {"_request_timeout": timeout_s}
        if dry_run:
            self.write_options["dry_run"] = "All"
        self._read: dict[Ref, Any] = {}
        #: Where an ownerReferences walk stopped early, for the outcome.
        self.notes: list[str] = []

    def _method(self, kind: str, verb: str) -> Any:
        spec = KINDS[kind]
        return getattr(spec.api(self.api), verb.format(spec.snake))

    async def _call(self, operation: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except ApiException as exc:
            raise CallFailed.from_api(operation, exc) from None
        except aiohttp.ClientSSLError as exc:  # a certificate will not fix itself
            raise CallFailed(operation, None, "TLS", str(exc), temporary=False) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = type(exc).__name__
            raise CallFailed(operation, None, reason, str(exc) or reason, temporary=True) from None

    async def read(self, ref: Ref) -> Any:
        if ref not in self._read:
            method = self._method(ref.kind, "read_namespaced_{}")
            self._read[ref] = await self._call(
                f"get {ref}", method(ref.name, ref.namespace, _request_timeout=self.timeout_s)
            )
        return self._read[ref]

    async def list_objects(
        self, kind: str, namespace: str, selector: str | None = None
    ) -> list[Any]:
        """Every object of `kind` in `namespace` ("*": all), page by page."""
        args: tuple[str, ...] = () if namespace == "*" else (namespace,)
        verb = "list_{}_for_all_namespaces" if namespace == "*" else "list_namespaced_{}"
        method = self._method(kind, verb)
        items: list[Any] = []
        token = None
        while True:
            options: dict[str, Any] = {"limit": PAGE_SIZE, "_request_timeout": self.timeout_s}
            if selector:
                options["label_selector"] = selector
            if token:
                options["_continue"] = token
            page = await self._call(f"list {kind} in {namespace}", method(*args, **options))
            for item in page.items or []:
                self._read[_ref(kind, item)] = item
                items.append(item)
            token = page.metadata._continue if page.metadata else None
            if not token:
                return items

    async def top_level(self, ref: Ref) -> tuple[Ref, list[Ref]]:
        """The controller at the top of `ref`'s ownerReferences, and the objects between."""
        chain: list[Ref] = []
        current, obj = ref, await self.read(ref)
        for _ in range(MAX_OWNER_DEPTH):
            owner = _controller(obj)
            if owner is None:
                break
            group = (owner.api_version or "").rpartition("/")[0]
            if owner.kind not in KINDS or group != KINDS[owner.kind].group:
                self._note(f"{current} is owned by {owner.kind} {owner.name} ({group or 'core'})")
                break  # a kind we do not act on (a CRD...): the walk stops below it
            parent = Ref(owner.kind, current.namespace, owner.name)
            try:
                parent_obj = await self.read(parent)
            except CallFailed as exc:
                if exc.status != 404:
                    raise
                self._note(f"{current}: its owner {parent} is gone")
                break
            if owner.uid and parent_obj.metadata.uid != owner.uid:
                self._note(f"{current}: its owner {parent} was replaced (uid differs)")
                break
            chain.append(current)
            current, obj = parent, parent_obj
        return current, chain

    def _note(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    async def patch_metadata(self, ref: Ref, metadata: dict[str, dict[str, str]]) -> Any:
        method = self._method(ref.kind, "patch_namespaced_{}")
        return await self._call(
            f"patch {ref}",
            method(
                ref.name,
                ref.namespace,
                {"metadata": metadata},
                **self.write_options,
            ),
        )

    async def scale_to_zero(self, ref: Ref) -> None:
        method = self._method(ref.kind, "patch_namespaced_{}_scale")
        await self._call(
            f"scale {ref} to 0",
            method(
                ref.name,
                ref.namespace,
                {"spec": {"replicas": 0}},
                **self.write_options,
            ),
        )

    async def delete_pod(self, ref: Ref, uid: str | None) -> bool:
        """Delete this very pod (a same-named successor is left alone); False: already gone."""
        # With a body, the API server reads DeleteOptions from it and ignores the query:
        # the dry run must be in the body too, or the pod is really deleted.
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid=uid),
            dry_run=[self.write_options["dry_run"]] if "dry_run" in self.write_options else None,
        )
        try:
            await self._call(
                f"delete {ref}",
                client.CoreV1Api(self.api).delete_namespaced_pod(
                    ref.name,
                    ref.namespace,
                    body=options,
                    **self.write_options,
                ),
            )
        except CallFailed as exc:
            if exc.status == 404:
                return False
            raise
        return True


def _ref(kind: str, obj: Any) -> Ref:
    return Ref(kind, obj.metadata.namespace, obj.metadata.name)


def _controller(obj: Any) -> Any:
    """The managing owner reference (`controller: true`), else a sole owner, else None."""
    owners = obj.metadata.owner_references or []
    return next((o for o in owners if o.controller), owners[0] if len(owners) == 1 else None)


# --- from a plan to objects --------------------------------------------------------------


@dataclass
class Found:
    ref: Ref
    obj: Any
    found: str  #: why it is a target
    via: list[str] = field(default_factory=list)  #: the objects it was reached from


@dataclass
class Targets:
    marked: list[Found] = field(default_factory=list)  #: get labels and annotations
    pods: list[Found] = field(default_factory=list)  #: delete-pods
    controllers: list[Found] = field(default_factory=list)  #: scale-to-zero


async def find(cluster: Cluster, plan: Plan) -> Targets:
    if plan.target == "selector":
        return await _by_selector(cluster, plan)
    if plan.target == "event-workload":
        return await _event_workload(cluster, plan)
    return await _by_image(cluster, plan)


async def _by_selector(cluster: Cluster, plan: Plan) -> Targets:
    assert plan.namespace and plan.selector
    objects = await cluster.list_objects(plan.kind, plan.namespace, plan.selector)
    found = [Found(_ref(plan.kind, o), o, f"matches {plan.selector}") for o in objects]
    targets = Targets(marked=found)
    if plan.delete_pods:
        pods = found if plan.kind == "Pod" else await _pods_under(cluster, found)
        targets.pods = pods
    if plan.scale_to_zero:
        targets.controllers = await _tops(cluster, found)
    return targets


async def _event_workload(cluster: Cluster, plan: Plan) -> Targets:
    assert plan.workload is not None
    named = Ref(plan.workload.kind, plan.workload.namespace, plan.workload.name)
    top, chain = await cluster.top_level(named)
    why = "named by the event" if top == named else f"top-level controller of {named}"
    target = Found(top, await cluster.read(top), why, [str(r) for r in chain])
    targets = Targets(marked=[target], controllers=[target])
    if plan.delete_pods:
        targets.pods = [target] if top.kind == "Pod" else await _pods_under(cluster, [target])
    return targets


async def _by_image(cluster: Cluster, plan: Plan) -> Targets:
    assert plan.namespace
    wanted = [parse_image(i) for i in plan.images]
    pods = []
    for pod in await cluster.list_objects("Pod", plan.namespace):
        match = _running(pod, wanted)
        if match:
            pods.append(Found(_ref("Pod", pod), pod, match))
    controllers = await _tops(cluster, pods)
    marked = {f.ref: f for f in pods} | {c.ref: c for c in controllers}
    return Targets(marked=list(marked.values()), pods=pods, controllers=controllers)


async def _tops(cluster: Cluster, found: Iterable[Found]) -> list[Found]:
    """The top-level controllers of `found`, each once, with the objects that lead to it."""
    tops: dict[Ref, Found] = {}
    for item in found:
        top, _ = await cluster.top_level(item.ref)
        if top == item.ref:
            tops.setdefault(top, Found(top, item.obj, item.found))
            continue
        entry = tops.setdefault(top, Found(top, await cluster.read(top), "top-level controller"))
        entry.via.append(str(item.ref))
    return list(tops.values())


async def _pods_under(cluster: Cluster, workloads: list[Found]) -> list[Found]:
    """The pods whose ownerReferences chain passes through one of `workloads`."""
    wanted = {w.ref for w in workloads}
    pods = []
    for namespace in sorted({w.ref.namespace for w in workloads}):
        for pod in await cluster.list_objects("Pod", namespace):
            ref = _ref("Pod", pod)
            top, chain = await cluster.top_level(ref)
            owner = next((r for r in (*chain[1:], top) if r in wanted), None)
            if owner is not None:
                pods.append(Found(ref, pod, f"owned by {owner}"))
    return pods


def _running(pod: Any, wanted: list[ImageRef]) -> str | None:
    """Why `pod` runs one of the `wanted` images (container and image), or None."""
    spec, status = pod.spec, pod.status
    containers = [
        *(spec.containers or []),
        *(spec.init_containers or []),
        *(spec.ephemeral_containers or []),
    ]
    for container in containers:
        running = _parsed(container.image)
        image = next((w for w in wanted if running and w.matches(running)), None)
        if image is not None:
            return f"container {container.name} runs {container.image} (matches {image})"
    statuses = [
        *((status.container_statuses or []) if status else []),
        *((status.init_container_statuses or []) if status else []),
    ]
    for state in statuses:  # a tag-only spec whose resolved digest is the wanted one
        running = _parsed(state.image_id)
        image = next((w for w in wanted if running and w.digest and w.matches(running)), None)
        if image is not None:
            return f"container {state.name} runs {state.image_id} (matches {image})"
    return None


def _parsed(image: str | None) -> ImageRef | None:
    try:
        return parse_image(image) if image else None
    except ActionPermanentError:
        return None
