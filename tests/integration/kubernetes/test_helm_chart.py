"""The Helm chart: `helm lint` and `helm template` pass, and every rendered manifest is
accepted by the real kube-apiserver in a server-side dry run (server-side apply with
dryRun=All: schema, defaulting and admission, nothing stored).

helm comes from scripts/helm (built from the Go module proxy). The API server has no
Prometheus Operator, so the test installs minimal CRDs for ServiceMonitor and
PrometheusRule (monitoring.coreos.com/v1, any fields) when they are missing, and leaves
them installed: the chart's monitoring objects are dry-run too, against their kind.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from tests.conftest import REPO, missing_service, service_env
from tests.kube_support import eventually, status_of

CHART = REPO / "deploy" / "helm" / "postee-streams"

#: Value sets the dry run covers (each as `--set` arguments).
VALUE_SETS = {
    "defaults": [],
    "namespaced-rbac-existing-secret": [
        "rbac.namespaced=true",
        "rbac.namespaces={@NS@}",
        "configuration.existingSecret.enabled=true",
        "configuration.existingSecret.name=my-postee-cfg",
        "envFromSecret=postee-secrets",
        "regoFilters.policy\\.rego=package postee\nallow { input.x }",
        "replicaCount=3",
    ],
    "runners": ["runners.enabled=true"],
}

MONITORING_CRDS = {"servicemonitors": "ServiceMonitor", "prometheusrules": "PrometheusRule"}


@pytest.fixture(scope="session")
def helm() -> Path:
    built = service_env().get("POSTEE_HELM")  # written by scripts/services up
    if built and Path(built).is_file():
        return Path(built)
    done = subprocess.run(
        [str(REPO / "scripts" / "helm"), "path"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        missing_service("helm is not built: run `scripts/helm build` (scripts/services up does)")
    return Path(done.stdout.strip())


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(helm: Path, namespace: str, sets: list[str]) -> list[dict[str, Any]]:
    args = ["template", "ops", str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value.replace("@NS@", namespace)]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm_lint(helm: Path, name: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", "postee"]
    for value in VALUE_SETS[name]:
        args += ["--set", value.replace("@NS@", "web")]
    done = run_helm(helm, *args)
    assert done.returncode == 0, done.stdout + done.stderr


def test_template_renders_what_the_worker_needs(helm: Path) -> None:
    docs = render(helm, "postee", [])
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor",
        ]
    )
    (deployment,) = (d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env["POSTEE_DATA_DIR"].startswith("/data") and env["TMPDIR"] == "/tmp"
    assert env["POSTEE_LOG_FORMAT"] == "json"
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts
    (role,) = (d for d in docs if d["kind"] == "ClusterRole")
    manifest = next(
        d
        for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "rbac.yaml").read_text())
        if d and d["kind"] == "ClusterRole"
    )
    assert role["rules"] == manifest["rules"]  # the same least privilege as the RBAC file
    (rule,) = (d for d in docs if d["kind"] == "PrometheusRule")
    alerts = {r["alert"]: r["expr"] for r in rule["spec"]["groups"][0]["rules"]}
    assert "postee_dlq_records_total" in alerts["PosteeStreamsDLQGrowing"]
    assert "postee_consumer_lag" in alerts["PosteeStreamsConsumerLag"]


def test_runners_are_a_daemonset_named_after_the_node(helm: Path) -> None:
    docs = render(helm, "postee", ["runners.enabled=true"])
    (daemonset,) = (d for d in docs if d["kind"] == "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (runner,) = pod["containers"]
    assert runner["args"] == ["runner"]
    (name,) = (e for e in runner["env"] if e["name"] == "POSTEE_RUNNER_NAME")
    assert name["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert runner["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {"path": "/var/log/postee-forensics", "type": "DirectoryOrCreate"} in [
        v.get("hostPath") for v in pod["volumes"]
    ]
    # The workers' Service must not select runner pods.
    (service,) = (d for d in docs if d["kind"] == "Service")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    assert not set(service["spec"]["selector"].items()) <= set(labels.items())
    assert "DaemonSet" not in {d["kind"] for d in render(helm, "postee", [])}


def test_values_schema_refuses_bad_values(helm: Path) -> None:
    for bad in ["kafka.topicPrefix=not a prefix", "logFormat=xml", "service.port=0"]:
        done = run_helm(helm, "template", "ops", str(CHART), "--set", bad)
        assert done.returncode != 0 and "values don't meet the specifications" in done.stderr, bad
    done = run_helm(
        helm, "template", "ops", str(CHART), "--set", "configuration.existingSecret.enabled=true"
    )
    assert done.returncode != 0


# --- server-side dry run ---------------------------------------------------------------------


@pytest.fixture
async def monitoring_crds(admin: client.ApiClient) -> AsyncIterator[None]:
    """Minimal CRDs for the Prometheus Operator kinds, when the server lacks them."""
    ext = client.ApiextensionsV1Api(admin)
    for plural, kind in MONITORING_CRDS.items():
        name = f"{plural}.monitoring.coreos.com"

        if await status_of(ext.read_custom_resource_definition(name)) == 404:
            await ext.create_custom_resource_definition(minimal_crd(plural, kind))

        async def established(name: str = name) -> bool:
            crd = await ext.read_custom_resource_definition(name)
            conditions = crd.status.conditions or []
            return any(c.type == "Established" and c.status == "True" for c in conditions)

        await eventually(established, f"CRD {name} is established")
    # They stay installed: a deleted CRD stays "terminating" for a long time on this
    # controller-less API server and refuses objects meanwhile (the next test's dry run).
    yield


def minimal_crd(plural: str, kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": kind.lower(), "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


async def raw(admin: client.ApiClient, method: str, path: str, **kwargs: Any) -> Any:
    return await admin.call_api(
        path,
        method,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        **kwargs,
    )


async def resource_of(admin: client.ApiClient, api_version: str, kind: str) -> tuple[str, bool]:
    """The collection path prefix and whether the kind is namespaced (from discovery)."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    listing = await raw(admin, "GET", base)
    for resource in listing["resources"]:
        if resource["kind"] == kind and "/" not in resource["name"]:
            return f"{base}/{{ns}}{resource['name']}", bool(resource["namespaced"])
    raise AssertionError(f"the API server does not serve {kind} in {api_version}")


async def dry_run_apply(admin: client.ApiClient, doc: dict[str, Any], namespace: str) -> Any:
    template, namespaced = await resource_of(admin, doc["apiVersion"], doc["kind"])
    ns = doc["metadata"].get("namespace", namespace)
    prefix = template.replace("{ns}", f"namespaces/{ns}/" if namespaced else "")
    return await raw(
        admin,
        "PATCH",
        f"{prefix}/{doc['metadata']['name']}",
        query_params=[("dryRun", "All"), ("fieldManager", "postee-chart-test"), ("force", "true")],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=doc,
    )


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
async def test_rendered_manifests_pass_a_server_side_dry_run(
    helm: Path, admin: client.ApiClient, namespace: str, monitoring_crds: None, name: str
) -> None:
    docs = render(helm, namespace, VALUE_SETS[name])
    assert docs
    for doc in docs:
        try:
            applied = await dry_run_apply(admin, doc, namespace)
        except ApiException as exc:
            raise AssertionError(
                f"{doc['kind']} {doc['metadata']['name']} refused: {exc.status} {exc.body}\n"
                + json.dumps(doc, indent=2)
            ) from None
        assert applied["kind"] == doc["kind"]
        assert applied["metadata"]["name"] == doc["metadata"]["name"]
    # Nothing was stored: it was a dry run.
    apps = client.AppsV1Api(admin)
    assert (await apps.list_namespaced_deployment(namespace)).items == []
