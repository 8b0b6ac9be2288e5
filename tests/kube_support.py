"""Helpers for tests against the real kube-apiserver of `make services` (scripts/kube).

The server runs no controllers: tests create Deployments, their ReplicaSets and Pods
themselves, linked by ownerReferences as the controllers would link them. Pods are left
unscheduled (no `spec.nodeName`): they persist as Pending and go at once when deleted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.conftest import REPO, missing_service, service_env

DEADLINE_S = 30.0
RBAC_MANIFEST = REPO / "deploy" / "kubernetes" / "rbac.yaml"
RUNNER_MANIFEST = REPO / "deploy" / "kubernetes" / "runner-daemonset.yaml"


def kubeconfig(var: str) -> Path:
    """The kubeconfig file `make services` wrote for `var` (KUBECONFIG, ...)."""
    value = service_env().get(var)
    if not value:
        missing_service(f"{var} is not set: run `make services` (scripts/services up) first")
    assert value is not None
    path = Path(value)
    if not path.is_file():
        missing_service(f"{var} names {path}, which does not exist: run `make services` first")
    return path


async def open_client(path: Path) -> client.ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(
        config_file=str(path), client_configuration=configuration, persist_config=False
    )
    # $KUBECONFIG from the process wins over .services/env: never test on a real cluster.
    if urlsplit(configuration.host).hostname not in ("127.0.0.1", "localhost", "::1"):
        missing_service(f"{path} points at {configuration.host}, not the local API server")
    return client.ApiClient(configuration=configuration)


async def open_admin() -> client.ApiClient:
    api = await open_client(kubeconfig("KUBECONFIG"))
    try:
        await client.VersionApi(api).get_code()
    except Exception as exc:
        await api.close()
        missing_service(f"no API server answers for $KUBECONFIG ({exc!r}): run `make services`")
    return api


async def eventually(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll `check` until it returns a truthy value, against a deadline."""
    end = time.monotonic() + DEADLINE_S
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"not within {DEADLINE_S}s: {what}")
        await asyncio.sleep(0.2)


async def status_of(call: Awaitable[Any]) -> int:
    """HTTP status of an API call: 200 when it succeeds, else the ApiException's."""
    try:
        await call
    except ApiException as exc:
        return int(exc.status)
    return 200


@asynccontextmanager
async def fresh_namespace(admin: client.ApiClient) -> AsyncIterator[str]:
    """A new namespace, emptied and removed afterwards (there is no namespace controller)."""
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    name = f"postee-test-{uuid.uuid4().hex[:8]}"
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        await core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        await apps.delete_collection_namespaced_replica_set(name)
        await apps.delete_collection_namespaced_deployment(name)
        await apps.delete_collection_namespaced_stateful_set(name)
        await apps.delete_collection_namespaced_daemon_set(name)
        await client.RbacAuthorizationV1Api(admin).delete_collection_namespaced_role_binding(name)
        await core.delete_namespace(name)
        await core.replace_namespace_finalize(
            name,
            client.V1Namespace(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1NamespaceSpec(finalizers=[]),
            ),
        )

        async def gone() -> bool:
            return await status_of(core.read_namespace(name)) == 404

        await eventually(gone, f"namespace {name} is deleted")


# --- objects as the controllers would have made them --------------------------------------


def owner(obj: Any, kind: str, api_version: str = "apps/v1") -> client.V1OwnerReference:
    return client.V1OwnerReference(
        api_version=api_version,
        kind=kind,
        name=obj.metadata.name,
        uid=obj.metadata.uid,
        controller=True,
    )


def pod_spec(image: str, init_image: str | None = None) -> client.V1PodSpec:
    init = [client.V1Container(name="init", image=init_image)] if init_image else None
    return client.V1PodSpec(
        containers=[client.V1Container(name="main", image=image)], init_containers=init
    )


def template(labels: dict[str, str], image: str) -> client.V1PodTemplateSpec:
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels), spec=pod_spec(image)
    )


class Objects:
    """Creates workloads in one namespace with the admin client."""

    def __init__(self, admin: client.ApiClient, namespace: str) -> None:
        self.core, self.apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
        self.namespace = namespace

    async def pod(
        self,
        name: str,
        image: str,
        *,
        owned_by: Any = None,
        owner_kind: str = "ReplicaSet",
        labels: dict[str, str] | None = None,
        init_image: str | None = None,
    ) -> client.V1Pod:
        refs = [owner(owned_by, owner_kind)] if owned_by is not None else None
        return await self.core.create_namespaced_pod(
            self.namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=name, labels=labels, owner_references=refs),
                spec=pod_spec(image, init_image),
            ),
        )

    async def deployment(
        self, name: str, image: str, replicas: int = 2, labels: dict[str, str] | None = None
    ) -> client.V1Deployment:
        selector = {"app": name}
        return await self.apps.create_namespaced_deployment(
            self.namespace,
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=name, labels=labels),
                spec=client.V1DeploymentSpec(
                    replicas=replicas,
                    selector=client.V1LabelSelector(match_labels=selector),
                    template=template(selector, image),
                ),
            ),
        )

    async def replica_set(
        self, name: str, deployment: client.V1Deployment, image: str
    ) -> client.V1ReplicaSet:
        selector = {"app": deployment.metadata.name, "pod-template-hash": name.rsplit("-", 1)[-1]}
        return await self.apps.create_namespaced_replica_set(
            self.namespace,
            client.V1ReplicaSet(
                metadata=client.V1ObjectMeta(
                    name=name, labels=selector, owner_references=[owner(deployment, "Deployment")]
                ),
                spec=client.V1ReplicaSetSpec(
                    replicas=deployment.spec.replicas,
                    selector=client.V1LabelSelector(match_labels=selector),
                    template=template(selector, image),
                ),
            ),
        )

    async def deployment_with_pods(
        self, name: str, image: str, pods: int = 2
    ) -> tuple[client.V1Deployment, client.V1ReplicaSet, list[client.V1Pod]]:
        """A Deployment, its ReplicaSet `<name>-<hash>` and pods `<rs>-<n>`, linked by owner."""
        deployment = await self.deployment(name, image, replicas=pods)
        rs = await self.replica_set(f"{name}-6d4cf56db6", deployment, image)
        created = [
            await self.pod(f"{rs.metadata.name}-{i}", image, owned_by=rs, labels={"app": name})
            for i in range(pods)
        ]
        return deployment, rs, created

    async def pod_names(self) -> set[str]:
        return {
            p.metadata.name for p in (await self.core.list_namespaced_pod(self.namespace)).items
        }


# --- RBAC from deploy/kubernetes/rbac.yaml ------------------------------------------------


def manifest_rules() -> list[dict[str, Any]]:
    """The rules of the manifest's ClusterRole."""
    docs = [d for d in yaml.safe_load_all(RBAC_MANIFEST.read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    rules: list[dict[str, Any]] = role["rules"]
    return rules


@asynccontextmanager
async def granted(admin: client.ApiClient, namespace: str, user: str) -> AsyncIterator[str]:
    """The manifest's ClusterRole (under a unique name), bound to `user` in `namespace`."""
    rbac = client.RbacAuthorizationV1Api(admin)
    name = f"postee-action-{namespace}"
    rules = [
        client.V1PolicyRule(api_groups=r["apiGroups"], resources=r["resources"], verbs=r["verbs"])
        for r in manifest_rules()
    ]
    await rbac.create_cluster_role(
        client.V1ClusterRole(metadata=client.V1ObjectMeta(name=name), rules=rules)
    )
    try:
        await rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name=name),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=name
                ),
                subjects=[
                    client.RbacV1Subject(
                        api_group="rbac.authorization.k8s.io", kind="User", name=user
                    )
                ],
            ),
        )
        yield name
    finally:
        await rbac.delete_cluster_role(name)
