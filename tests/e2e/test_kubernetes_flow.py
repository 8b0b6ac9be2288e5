"""Reports through the broker to the kubernetes action and back as outcomes.

The worker runs the two Kubernetes examples (examples/cfg-k8s-*.yaml), pointed at a fresh
namespace of the real API server: a trivy-operator report labels the Deployment that owns
the scanned ReplicaSet; a Trivy image report removes the image (scale to zero, delete pods).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes_asyncio import client

from streams.records import schema_errors
from tests.kafka_support import REPO, start_worker, value
from tests.kube_support import Objects, kubeconfig

pytestmark = pytest.mark.kafka

VULNERABLE = "nginx:1.16"


def examples_config(tmp_path: Path, namespace: str) -> Path:
    """Both examples in one file, confined to `namespace` and for real (no dry run)."""
    merged: dict[str, Any] = {"name": "k8s-examples", "routes": [], "actions": []}
    for example in ("cfg-k8s-label-vulnerable.yaml", "cfg-k8s-remove-vulnerable.yaml"):
        cfg = yaml.safe_load((REPO / "examples" / example).read_text())
        merged["routes"] += cfg["routes"]
        for action in cfg["actions"]:
            action.pop("kube-config-file", None)  # the worker's $KUBECONFIG instead
            action.pop("dry-run", None)
            if "kube-namespace" in action:
                action["kube-namespace"] = namespace
            merged["actions"].append(action)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return path


def trivy_operator_report(namespace: str) -> dict[str, Any]:
    report = json.loads((REPO / "tests/samples/upstream/trivy-operator-input.json").read_text())
    report["metadata"]["namespace"] = namespace
    report["metadata"]["labels"]["trivy-operator.resource.namespace"] = namespace
    return report


def trivy_image_report() -> dict[str, Any]:
    """The upstream Trivy sample, as a scan of the image nginx:1.16."""
    report = json.loads((REPO / "tests/samples/upstream/trivy-input.json").read_text())
    report |= {"ArtifactName": VULNERABLE, "ArtifactType": "container_image"}
    return report


async def test_reports_label_and_remove_vulnerable_workloads(
    bootstrap, log_dir, tmp_path, admin, namespace, reader_factory
):
    objects = Objects(admin, namespace)
    _, _, vulnerable = await objects.deployment_with_pods("nginx", VULNERABLE, pods=2)
    await objects.deployment_with_pods("other", "nginx:1.17", pods=1)
    worker = start_worker(
        bootstrap,
        examples_config(tmp_path, namespace),
        log_dir,
        "kubernetes",
        {"KUBECONFIG": str(kubeconfig("KUBECONFIG"))},
    )
    try:
        outcomes = await reader_factory(worker.topic("outcomes"))
        ids = {}
        for name, report in (
            ("label", trivy_operator_report(namespace)),
            ("remove", trivy_image_report()),
        ):
            response = httpx.post(worker.base_url + "/", json=report, timeout=10)
            assert response.status_code == 202
            ids[name] = response.json()["id"]
        found = {}
        for name, event_id in ids.items():
            (message,) = await outcomes.wait_for(
                lambda m, e=event_id: value(m)["kind"] == "outcome" and value(m)["event_id"] == e
            )
            found[name] = value(message)
    finally:
        worker.stop()

    for outcome in found.values():
        assert schema_errors("outcome", outcome) == []
        assert outcome["type"] == "kubernetes" and outcome["status"] == "succeeded", outcome

    labelled = found["label"]
    assert labelled["action"] == "label-vulnerable-workload"
    (entry,) = labelled["detail"]["objects"]
    assert (entry["kind"], entry["namespace"], entry["name"]) == ("Deployment", namespace, "nginx")
    assert entry["changes"]["labels"] == {
        "security.postee.io/vulnerable": "true",
        "security.postee.io/critical-count": "2",
    }

    removed = found["remove"]
    assert removed["action"] == "remove-vulnerable-image"
    assert removed["detail"]["images"] == [VULNERABLE]
    touched = {(o["kind"], o["name"]): o["changes"] for o in removed["detail"]["objects"]}
    assert touched[("Deployment", "nginx")]["replicas"] == {"from": 2, "to": 0}
    for pod in vulnerable:
        assert touched[("Pod", pod.metadata.name)]["deleted"] is True
    assert not any(name.startswith("other") for _, name in touched)

    apps = client.AppsV1Api(admin)
    nginx = await apps.read_namespaced_deployment("nginx", namespace)
    assert nginx.spec.replicas == 0
    assert nginx.metadata.labels["security.postee.io/vulnerable"] == "true"
    assert nginx.metadata.labels["security.postee.io/quarantined"] == "true"
    assert nginx.metadata.annotations["security.postee.io/image"] == (
        "index.docker.io/library/nginx:1.16"
    )
    assert (await apps.read_namespaced_deployment("other", namespace)).spec.replicas == 1
    assert await objects.pod_names() == {"other-6d4cf56db6-0"}
