"""The kubernetes action against the real API server of `make services` (scripts/kube).

Each test works in a fresh namespace, creating the workloads the controllers would have
made (Deployment → ReplicaSet → Pods, linked by ownerReferences), then runs
`KubernetesAction.execute` as the executor would and checks the cluster afterwards.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from actions.base import ActionPermanentError, ActionRequest, ActionTemporaryError
from actions.kubernetes import KubernetesAction
from tests.conftest import SAMPLES
from tests.kube_support import (
    Objects,
    eventually,
    granted,
    kubeconfig,
    open_client,
    status_of,
)

VULNERABLE = "nginx:1.16"  # what the trivy-operator sample reports (index.docker.io)


@pytest.fixture
def objects(admin: client.ApiClient, namespace: str) -> Objects:
    return Objects(admin, namespace)


@pytest.fixture
async def action() -> AsyncIterator[KubernetesAction]:
    async with KubernetesAction() as instance:
        yield instance


@pytest.fixture
def admin_config() -> str:
    return str(kubeconfig("KUBECONFIG"))


def request(
    params: dict[str, Any], event: dict[str, Any] | None = None, *, dry_run: bool = False
) -> ActionRequest:
    event = event or {}
    return ActionRequest(
        command_id="c0ffee" * 5 + "00",
        event_id="event-1",
        action="kube",
        params=params,
        event=event,
        event_text=json.dumps(event),
        dry_run=dry_run,
        timeout_s=20.0,
    )


def trivy_operator_report(namespace: str) -> dict[str, Any]:
    """The upstream sample (a ReplicaSet's VulnerabilityReport), moved to `namespace`."""
    report = json.loads((SAMPLES / "upstream" / "trivy-operator-input.json").read_text())
    report["metadata"]["namespace"] = namespace
    report["metadata"]["labels"]["trivy-operator.resource.namespace"] = namespace
    return report


def by_name(detail: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["name"]): o for o in detail["objects"]}


async def labels_of(admin: client.ApiClient, kind: str, name: str, namespace: str) -> dict:
    if kind == "Pod":
        obj = await client.CoreV1Api(admin).read_namespaced_pod(name, namespace)
    else:
        read = getattr(client.AppsV1Api(admin), f"read_namespaced_{kind}")
        obj = await read(name, namespace)
    return obj.metadata.labels or {}


async def test_labels_and_annotates_pods_by_selector(
    admin, namespace, objects, action, admin_config, monkeypatch
):
    monkeypatch.setenv("KUBECONFIG", admin_config)  # no kube-config-file: $KUBECONFIG
    for name, app in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        await objects.pod(name, "busybox:1.36", labels={"app": app})
    event = json.loads((SAMPLES / "tracee" / "trc-12-illegitimate-shell.json").read_text())
    params = {
        "kube-namespace": namespace,
        "kube-label-selector": "app=web",
        "kube-actions": {
            "labels": {"postee.io/signature": "event.input.SigMetadata.ID", "quarantine": True},
            "annotations": {"postee.io/reason": "event.input.SigMetadata.Name"},
        },
    }
    result = await action.execute(request(params, event))

    assert result.status == "succeeded", result
    assert result.detail["touched"] == 2
    assert json.loads(json.dumps(result.detail)) == result.detail  # JSON-ready
    core = client.CoreV1Api(admin)
    for name in ("web-1", "web-2"):
        pod = await core.read_namespaced_pod(name, namespace)
        assert pod.metadata.labels == {
            "app": "web",
            "postee.io/signature": "TRC-12",
            "quarantine": "true",
        }
        assert pod.metadata.annotations == {"postee.io/reason": "Illegitimate Shell"}
        entry = by_name(result.detail)[("Pod", name)]
        assert entry["namespace"] == namespace
        assert entry["changes"]["labels"]["postee.io/signature"] == "TRC-12"
    untouched = await core.read_namespaced_pod("db-1", namespace)
    assert untouched.metadata.labels == {"app": "db"} and not untouched.metadata.annotations


async def test_selector_on_deployments(admin, namespace, objects, action, admin_config):
    await objects.deployment("web", "busybox:1.36", labels={"tier": "front"})
    await objects.deployment("db", "busybox:1.36", labels={"tier": "back"})
    params = {
        "kube-config-file": admin_config,
        "kube-namespace": namespace,
        "kube-label-selector": "tier=front",
        "kube-resource": "deployments",
        "kube-actions": {"labels": {"postee.io/flagged": "yes"}},
    }
    result = await action.execute(request(params))

    assert result.status == "succeeded", result
    assert list(by_name(result.detail)) == [("Deployment", "web")]
    assert (await labels_of(admin, "deployment", "web", namespace))["postee.io/flagged"] == "yes"
    assert "postee.io/flagged" not in await labels_of(admin, "deployment", "db", namespace)


async def test_trivy_operator_report_labels_the_owning_deployment(
    admin, namespace, objects, action, admin_config
):
    _, rs, pods = await objects.deployment_with_pods("nginx", VULNERABLE)
    assert rs.metadata.name == "nginx-6d4cf56db6"  # the sample's ReplicaSet
    await objects.deployment_with_pods("unrelated", VULNERABLE)
    params = {
        "kube-config-file": admin_config,
        "kube-target": "event-workload",
        "kube-actions": {
            "labels": {
                "postee.io/vulnerable": "true",
                "postee.io/critical": "event.input.report.summary.criticalCount",
            },
            "annotations": {
                "postee.io/image": "event.input.report.artifact.repository:"
                "event.input.report.artifact.tag",
                "postee.io/report-of": "event.input.metadata.labels."
                "trivy-operator\\.resource\\.kind/"
                "event.input.metadata.labels.trivy-operator\\.resource\\.name",
            },
        },
    }
    result = await action.execute(request(params, trivy_operator_report(namespace)))

    assert result.status == "succeeded", result
    (entry,) = result.detail["objects"]
    assert (entry["kind"], entry["namespace"], entry["name"]) == ("Deployment", namespace, "nginx")
    assert entry["via"] == [f"ReplicaSet {namespace}/nginx-6d4cf56db6"]
    assert result.detail["workload"]["kind"] == "ReplicaSet"
    labelled = await client.AppsV1Api(admin).read_namespaced_deployment("nginx", namespace)
    assert labelled.metadata.labels["postee.io/vulnerable"] == "true"
    assert labelled.metadata.labels["postee.io/critical"] == "2"
    assert labelled.metadata.annotations == {
        "postee.io/image": "library/nginx:1.16",
        "postee.io/report-of": "ReplicaSet/nginx-6d4cf56db6",
    }
    assert "postee.io/vulnerable" not in await labels_of(
        admin, "replica_set", rs.metadata.name, namespace
    )
    assert "postee.io/vulnerable" not in await labels_of(
        admin, "deployment", "unrelated", namespace
    )
    for pod in pods:
        assert "postee.io/vulnerable" not in await labels_of(
            admin, "Pod", pod.metadata.name, namespace
        )


async def test_image_target_deletes_pods_running_the_vulnerable_image(
    admin, namespace, objects, action, admin_config
):
    _, _, owned = await objects.deployment_with_pods("web", "docker.io/library/nginx:1.16", pods=1)
    await objects.pod("bare", VULNERABLE)
    await objects.pod("init", "busybox:1.36", init_image="index.docker.io/library/nginx:1.16")
    await objects.pod("pinned", "nginx:1.16@sha256:" + "a" * 64)
    keep = {
        "other-tag": "nginx:1.17",
        "latest": "nginx",
        "other-image": "busybox:1.36",
        "other-registry": "registry.example.com/library/nginx:1.16",
    }
    for name, image in keep.items():
        await objects.pod(name, image)
    params = {
        "kube-config-file": admin_config,
        "kube-namespace": namespace,
        "kube-target": "image",  # kube-image: the report's index.docker.io/library/nginx:1.16
        "kube-actions": {"delete-pods": True},
    }
    result = await action.execute(request(params, trivy_operator_report(namespace)))

    assert result.status == "succeeded", result
    deleted = {owned[0].metadata.name, "bare", "init", "pinned"}
    assert await objects.pod_names() == set(keep)
    assert result.detail["images"] == ["index.docker.io/library/nginx:1.16"]
    found = by_name(result.detail)
    assert {name for kind, name in found if kind == "Pod"} == deleted
    for name in deleted:
        assert found[("Pod", name)]["changes"] == {"deleted": True}
    assert "init runs index.docker.io/library/nginx:1.16" in found[("Pod", "init")]["found"]
    # The Deployment is found as the pod's top-level controller, and left as it was.
    assert found[("Deployment", "web")]["changes"] == {}
    assert found[("Deployment", "web")]["via"] == [f"Pod {namespace}/web-6d4cf56db6-0"]
    assert result.detail["touched"] == len(deleted)


async def test_scale_to_zero(admin, namespace, objects, action, admin_config):
    apps = client.AppsV1Api(admin)
    await objects.deployment_with_pods("web", VULNERABLE, pods=3)
    await objects.deployment_with_pods("safe", "nginx:1.17", pods=1)
    stateful = await apps.create_namespaced_stateful_set(
        namespace,
        client.V1StatefulSet(
            metadata=client.V1ObjectMeta(name="db"),
            spec=client.V1StatefulSetSpec(
                replicas=2,
                service_name="db",
                selector=client.V1LabelSelector(match_labels={"app": "db"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "db"}),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="db", image=VULNERABLE)]
                    ),
                ),
            ),
        ),
    )
    await objects.pod("db-0", VULNERABLE, owned_by=stateful, owner_kind="StatefulSet")
    params = {
        "kube-config-file": admin_config,
        "kube-namespace": namespace,
        "kube-target": "image",
        "kube-image": "event.input.image",
        "kube-actions": {"scale-to-zero": True, "labels": {"postee.io/scaled-down": "true"}},
    }
    result = await action.execute(request(params, {"image": "docker.io/nginx:1.16"}))

    assert result.status == "succeeded", result
    assert (await apps.read_namespaced_deployment("web", namespace)).spec.replicas == 0
    assert (await apps.read_namespaced_stateful_set("db", namespace)).spec.replicas == 0
    assert (await apps.read_namespaced_deployment("safe", namespace)).spec.replicas == 1
    found = by_name(result.detail)
    assert found[("Deployment", "web")]["changes"]["replicas"] == {"from": 3, "to": 0}
    assert found[("StatefulSet", "db")]["changes"]["replicas"] == {"from": 2, "to": 0}
    assert ("Deployment", "safe") not in found
    labels = await labels_of(admin, "deployment", "web", namespace)
    assert labels["postee.io/scaled-down"] == "true"
    # Pods stay: scaling is the (absent) controller's job; delete-pods was not asked.
    assert len(await objects.pod_names()) == 5


async def test_daemon_set_cannot_scale_and_says_so(admin, namespace, objects, action, admin_config):
    daemons = await client.AppsV1Api(admin).create_namespaced_daemon_set(
        namespace,
        client.V1DaemonSet(
            metadata=client.V1ObjectMeta(name="agent"),
            spec=client.V1DaemonSetSpec(
                selector=client.V1LabelSelector(match_labels={"app": "agent"}),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels={"app": "agent"}),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="a", image=VULNERABLE)]
                    ),
                ),
            ),
        ),
    )
    await objects.pod("agent-x", VULNERABLE, owned_by=daemons, owner_kind="DaemonSet")
    params = {
        "kube-config-file": admin_config,
        "kube-namespace": namespace,
        "kube-target": "image",
        "kube-image": VULNERABLE,
        "kube-actions": {"scale-to-zero": True},
    }
    result = await action.execute(request(params))
    assert result.status == "succeeded", result
    assert result.detail["skipped"] == [
        {"object": f"DaemonSet {namespace}/agent", "reason": "a DaemonSet has no replicas to scale"}
    ]


async def test_rbac_manifest_identity_does_the_job(admin, namespace, objects, action):
    _, _, pods = await objects.deployment_with_pods("nginx", VULNERABLE, pods=2)
    await objects.pod("keep", "busybox:1.36")
    identity = kubeconfig("POSTEE_KUBE_ACTION_KUBECONFIG")
    async with granted(admin, namespace, "postee-action"):
        async with await open_client(identity) as mine:

            async def allowed() -> bool:
                core = client.CoreV1Api(mine)
                return await status_of(core.list_namespaced_pod(namespace)) == 200

            await eventually(allowed, "the RoleBinding lets postee-action list pods")
        event = trivy_operator_report(namespace)
        labelled = await action.execute(
            request(
                {
                    "kube-config-file": str(identity),
                    "kube-target": "event-workload",
                    "kube-actions": {"labels": {"postee.io/vulnerable": "true"}},
                },
                event,
            )
        )
        removed = await action.execute(
            request(
                {
                    "kube-config-file": str(identity),
                    "kube-namespace": namespace,
                    "kube-target": "image",
                    "kube-actions": {
                        "labels": {"postee.io/removed": "true"},
                        "scale-to-zero": True,
                        "delete-pods": True,
                    },
                },
                event,
            )
        )

    assert labelled.status == "succeeded", labelled
    assert removed.status == "succeeded", removed
    after = await client.AppsV1Api(admin).read_namespaced_deployment("nginx", namespace)
    assert after.metadata.labels["postee.io/vulnerable"] == "true"
    assert after.metadata.labels["postee.io/removed"] == "true"
    assert after.spec.replicas == 0
    assert await objects.pod_names() == {"keep"}
    assert {(o["kind"], o["name"]) for o in removed.detail["objects"]} == {
        ("Deployment", "nginx"),
        *(("Pod", p.metadata.name) for p in pods),
    }


async def test_identity_without_the_verbs_fails_with_403(namespace, objects, action):
    await objects.deployment_with_pods("nginx", VULNERABLE, pods=1)
    params = {
        "kube-config-file": str(kubeconfig("POSTEE_KUBE_NOBODY_KUBECONFIG")),
        "kube-namespace": namespace,
        "kube-target": "image",
        "kube-actions": {"delete-pods": True},
    }
    result = await action.execute(request(params, trivy_operator_report(namespace)))

    assert result.status == "failed"
    error = result.detail["error"]
    assert error["status"] == 403 and error["reason"] == "Forbidden"
    assert "postee-nobody" in error["message"] and "list" in error["message"]
    assert error["operation"] == f"list Pod in {namespace}"
    assert "403 Forbidden" in (result.error or "")
    assert result.detail["objects"] == []
    assert len(await objects.pod_names()) == 1


async def test_missing_workload_is_a_404_failure(namespace, action, admin_config):
    result = await action.execute(
        request(
            {"kube-config-file": admin_config, "kube-target": "event-workload"},
            trivy_operator_report(namespace),  # its ReplicaSet does not exist here
        )
    )
    assert result.status == "failed"
    assert result.detail["error"]["status"] == 404
    assert result.detail["error"]["reason"] == "NotFound"
    assert "nginx-6d4cf56db6" in result.detail["error"]["message"]


@pytest.mark.parametrize("how", ["dry-run key", "replay dry run"])
async def test_dry_run_reports_and_changes_nothing(
    admin, namespace, objects, action, admin_config, how
):
    await objects.deployment_with_pods("nginx", VULNERABLE, pods=2)
    params: dict[str, Any] = {
        "kube-config-file": admin_config,
        "kube-namespace": namespace,
        "kube-target": "image",
        "kube-actions": {
            "labels": {"postee.io/vulnerable": "true"},
            "annotations": {"postee.io/note": "would be removed"},
            "scale-to-zero": True,
            "delete-pods": True,
        },
    }
    if how == "dry-run key":
        params["dry-run"] = True
    before = await objects.pod_names()
    result = await action.execute(
        request(params, trivy_operator_report(namespace), dry_run=how == "replay dry run")
    )

    assert result.status == "dry_run", result
    assert result.detail["dry_run"] is True
    found = by_name(result.detail)
    assert found[("Deployment", "nginx")]["changes"]["replicas"] == {"from": 2, "to": 0}
    assert found[("Deployment", "nginx")]["changes"]["labels"] == {"postee.io/vulnerable": "true"}
    assert all(found[("Pod", p)]["changes"]["deleted"] is True for p in before)
    assert result.detail["touched"] == 3
    assert await objects.pod_names() == before
    deployment = await client.AppsV1Api(admin).read_namespaced_deployment("nginx", namespace)
    assert deployment.spec.replicas == 2
    assert "postee.io/vulnerable" not in (deployment.metadata.labels or {})
    assert not deployment.metadata.annotations
    for name in before:
        assert "postee.io/vulnerable" not in await labels_of(admin, "Pod", name, namespace)


def unreachable_kubeconfig(tmp_path: Path) -> str:
    """A kubeconfig whose server nobody listens on: any call would fail to connect."""
    path = tmp_path / "unreachable.kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "none",
                        "cluster": {
                            "server": "https://127.0.0.1:1",
                            "insecure-skip-tls-verify": True,
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "none", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return str(path)


@pytest.mark.parametrize(
    ("labels", "named"),
    [
        ({"postee.io/image": "event.input.report.artifact.repository"}, "postee.io/image"),
        ({"bad key!": "x"}, "bad key!"),
        ({"ok": "v" * 64}, "ok"),
        ({"UPPER.example.com/x": "y"}, "UPPER.example.com/x"),
    ],
)
async def test_invalid_labels_are_refused_before_any_call(tmp_path, action, labels, named):
    params = {
        "kube-config-file": unreachable_kubeconfig(tmp_path),
        "kube-namespace": "default",
        "kube-target": "image",
        "kube-actions": {"labels": labels, "delete-pods": True},
    }
    with pytest.raises(ActionPermanentError) as refused:  # a call would be a temporary error
        await action.execute(request(params, trivy_operator_report("default")))
    assert f"label {named}=" in str(refused.value)


async def test_unreachable_server_is_temporary(tmp_path, action):
    params = {
        "kube-config-file": unreachable_kubeconfig(tmp_path),
        "kube-namespace": "default",
        "kube-label-selector": "app=web",
        "kube-actions": {"labels": {"a": "b"}},
    }
    with pytest.raises(ActionTemporaryError) as caught:
        await action.execute(request(params))
    assert caught.value.detail["error"]["status"] is None
    assert caught.value.detail["error"]["operation"] == "list Pod in default"


async def test_clients_are_cached_per_config_file_and_closed(namespace, admin_config):
    action = KubernetesAction()
    params = {
        "kube-config-file": admin_config,
        "kube-namespace": namespace,
        "kube-label-selector": "app=none",
    }
    first = await action.execute(request(params))
    assert first.status == "succeeded" and first.detail["objects"] == []
    api = await action.client_for(admin_config)
    await action.execute(request(copy.deepcopy(params)))
    assert await action.client_for(admin_config) is api
    await action.aclose()
    assert api.rest_client.pool_manager.closed


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "kubeconfig not found"), ("just text\n", "not a kubeconfig")],
)
async def test_bad_kubeconfig_is_refused(tmp_path, action, content, message):
    path = tmp_path / "kubeconfig"
    if content is not None:
        path.write_text(content)
    params = {"kube-config-file": str(path), "kube-namespace": "d", "kube-label-selector": "a"}
    with pytest.raises(ActionPermanentError, match=message):
        await action.execute(request(params))
