"""deploy/kubernetes/runner-daemonset.yaml: accepted by the real API server (server-side dry
run: validation and admission, nothing stored), least privilege, and a runner config
that the runner itself accepts."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from kubernetes_asyncio import client

from streams import config
from tests.kube_support import RUNNER_MANIFEST, status_of

DOCS = [d for d in yaml.safe_load_all(RUNNER_MANIFEST.read_text()) if d]


def doc(kind: str) -> dict[str, Any]:
    (found,) = [d for d in DOCS if d["kind"] == kind]
    return found


async def test_the_api_server_accepts_every_object(admin, namespace):
    core, apps = client.CoreV1Api(admin), client.AppsV1Api(admin)
    create = {
        "ServiceAccount": core.create_namespaced_service_account,
        "ConfigMap": core.create_namespaced_config_map,
        "DaemonSet": apps.create_namespaced_daemon_set,
    }
    assert sorted(d["kind"] for d in DOCS) == sorted(create)
    for manifest in DOCS:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        made = await create[manifest["kind"]](namespace, body, dry_run="All")
        assert made.metadata.name == manifest["metadata"]["name"]
    daemon_set = doc("DaemonSet")["metadata"]["name"]
    # A dry run stores nothing.
    assert await status_of(apps.read_namespaced_daemon_set(daemon_set, namespace)) == 404
    # ... and validates: a broken copy is refused.
    broken = copy.deepcopy(doc("DaemonSet"))
    broken["metadata"]["namespace"] = namespace
    (host,) = [v for v in broken["spec"]["template"]["spec"]["volumes"] if "hostPath" in v]
    host["hostPath"]["type"] = "NoSuchType"
    refused = apps.create_namespaced_daemon_set(namespace, broken, dry_run="All")
    assert await status_of(refused) == 422


def test_least_privilege_and_the_node_as_runner_name():
    account = doc("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert not [d for d in DOCS if d["kind"].endswith("RoleBinding")]  # no API rights
    pod = doc("DaemonSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    (runner,) = pod["containers"]
    assert runner["args"] == ["runner"]
    context = runner["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    (name,) = [e for e in runner["env"] if e["name"] == "POSTEE_RUNNER_NAME"]
    assert name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    (init,) = pod["initContainers"]  # the one root step, with CAP_CHOWN alone
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    (host,) = [v for v in pod["volumes"] if "hostPath" in v]
    assert host["hostPath"]["path"] == "/var/log/postee-forensics"
    mounts = {m["name"]: m["mountPath"] for m in runner["volumeMounts"]}
    assert mounts[host["name"]] == host["hostPath"]["path"]


def test_the_runner_accepts_its_config(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(doc("ConfigMap")["data"]["cfg.yaml"])
    cfg = config.load(path, with_routes=False)
    assert {a.runs_on for a in cfg.actions.values()} == {"event.input.node"}
