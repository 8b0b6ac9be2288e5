"""The real Kubernetes API server of `make services` (scripts/kube), through kubernetes_asyncio.

It is kube-apiserver on kine with no controllers, scheduler or kubelet: objects are
stored and served, RBAC and admission apply, but nothing reconciles them. These tests
pin down what later tests may rely on:

- a Deployment's /scale subresource reads and patches, though no ReplicaSet appears;
- a bare Pod, scheduled (`spec.nodeName`) or not, persists as Pending until deleted,
  so it can be found by image, labelled and deleted;
- deleting a Pod bound to a node only marks it (no kubelet confirms), unless the
  grace period is 0; deleting an unscheduled Pod removes it at once;
- `postee-nobody` is refused (403); `postee-action` gets what a RoleBinding gives it.

Each test works in a fresh namespace. The API server has no namespace controller, so
the fixture deletes what the test made and then finalizes the namespace itself.
"""

from __future__ import annotations

from kubernetes_asyncio import client

from tests import kube_support
from tests.kube_support import eventually, status_of

IMAGE = "docker.io/library/busybox:1.36"


async def open_client(var: str) -> client.ApiClient:
    return await kube_support.open_client(kube_support.kubeconfig(var))


def pod(name: str, node: str | None = None, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1PodSpec(
            node_name=node, containers=[client.V1Container(name="main", image=IMAGE)]
        ),
    )


async def test_server_is_kubernetes(admin: client.ApiClient) -> None:
    version = await client.VersionApi(admin).get_code()
    assert version.major == "1"
    assert version.git_version.startswith("v1.")


async def test_deployment_scales_to_zero(admin: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(admin)
    labels = {"app": "web"}
    await apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="web", image=IMAGE)]),
                ),
            ),
        ),
    )
    scale = await apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 2

    patched = await apps.patch_namespaced_deployment_scale(
        "web", namespace, {"spec": {"replicas": 0}}
    )
    # Zero is left out of a Scale's JSON (omitempty), so the client reads None.
    assert not patched.spec.replicas
    deployment = await apps.read_namespaced_deployment("web", namespace)
    assert deployment.spec.replicas == 0
    # No deployment controller: nothing acts on the Deployment.
    assert not (await apps.list_namespaced_replica_set(namespace)).items
    assert not (await client.CoreV1Api(admin).list_namespaced_pod(namespace)).items


async def test_bare_pods_persist_until_deleted(admin: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin)
    await core.create_namespaced_pod(namespace, pod("unscheduled"))
    await core.create_namespaced_pod(namespace, pod("bound", node="fake-node"))

    pods = {p.metadata.name: p for p in (await core.list_namespaced_pod(namespace)).items}
    assert set(pods) == {"unscheduled", "bound"}
    assert pods["bound"].spec.node_name == "fake-node"
    assert pods["unscheduled"].spec.node_name is None
    for p in pods.values():
        assert p.status.phase == "Pending"
        assert p.spec.containers[0].image == IMAGE

    # Pods can be found by image and labelled, as a response action would.
    await core.patch_namespaced_pod("bound", namespace, {"metadata": {"labels": {"q": "1"}}})
    labelled = await core.list_namespaced_pod(namespace, label_selector="q=1")
    assert [p.metadata.name for p in labelled.items] == ["bound"]

    # An unscheduled pod is deleted at once, even with the default grace period.
    await core.delete_namespaced_pod("unscheduled", namespace)
    assert await status_of(core.read_namespaced_pod("unscheduled", namespace)) == 404

    # A pod bound to a node waits for its kubelet, which never comes: it is only marked.
    await core.delete_namespaced_pod("bound", namespace)
    marked = await core.read_namespaced_pod("bound", namespace)
    assert marked.metadata.deletion_timestamp is not None
    # Grace period 0 removes it at once.
    await core.delete_namespaced_pod("bound", namespace, grace_period_seconds=0)
    assert await status_of(core.read_namespaced_pod("bound", namespace)) == 404


async def test_nobody_is_forbidden(admin: client.ApiClient, namespace: str) -> None:
    await client.CoreV1Api(admin).create_namespaced_pod(namespace, pod("p", node="fake-node"))
    async with await open_client("POSTEE_KUBE_NOBODY_KUBECONFIG") as nobody:
        core = client.CoreV1Api(nobody)
        assert await status_of(core.list_namespaced_pod(namespace)) == 403
        assert await status_of(core.delete_namespaced_pod("p", namespace)) == 403


async def test_action_user_gets_what_a_role_binding_gives(
    admin: client.ApiClient, namespace: str
) -> None:
    await client.CoreV1Api(admin).create_namespaced_pod(namespace, pod("p", node="fake-node"))
    async with await open_client("POSTEE_KUBE_ACTION_KUBECONFIG") as action:
        core = client.CoreV1Api(action)
        assert await status_of(core.list_namespaced_pod(namespace)) == 403

        rbac = client.RbacAuthorizationV1Api(admin)
        await rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="postee-action"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[""], resources=["pods"], verbs=["get", "list", "patch"]
                    )
                ],
            ),
        )
        await rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="postee-action"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="postee-action"
                ),
                subjects=[
                    client.RbacV1Subject(
                        api_group="rbac.authorization.k8s.io", kind="User", name="postee-action"
                    )
                ],
            ),
        )

        async def allowed() -> bool:
            return await status_of(core.list_namespaced_pod(namespace)) == 200

        # The authorizer reads RBAC objects through a watch: allow it a moment.
        await eventually(allowed, "the RoleBinding lets postee-action list pods")
        await core.patch_namespaced_pod("p", namespace, {"metadata": {"labels": {"q": "1"}}})
        assert await status_of(core.delete_namespaced_pod("p", namespace)) == 403
