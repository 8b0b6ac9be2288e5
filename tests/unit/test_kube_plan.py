"""The kubernetes action's planning, with no cluster: keys, events, labels, image references."""

from __future__ import annotations

import json
from typing import Any

import pytest

from actions.base import ActionPermanentError, ActionRequest
from actions.kube_images import parse_image
from actions.kube_plan import (
    Workload,
    default_images,
    event_workload,
    label_key_problem,
    label_value_problem,
    plan,
)
from tests.conftest import SAMPLES


def sample(*path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SAMPLES.joinpath(*path).read_text())
    return loaded


def request(params: dict[str, Any], event: dict[str, Any] | None = None) -> ActionRequest:
    return ActionRequest("c", "e", "kube", params, event or {}, "{}")


@pytest.mark.parametrize(
    ("image", "normal"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.16", "docker.io/library/nginx:1.16"),
        ("library/nginx:1.16", "docker.io/library/nginx:1.16"),
        ("index.docker.io/library/nginx:1.16", "docker.io/library/nginx:1.16"),
        ("registry-1.docker.io/bitnami/redis:7", "docker.io/bitnami/redis:7"),
        ("docker.io/nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
        ("nginx:1.16@sha256:abc", "docker.io/library/nginx:1.16@sha256:abc"),
        ("localhost:5000/team/app:1", "localhost:5000/team/app:1"),
        ("Quay.IO/org/app", "quay.io/org/app:latest"),
        ("docker-pullable://nginx@sha256:abc", "docker.io/library/nginx@sha256:abc"),
    ],
)
def test_images_are_normalised(image, normal):
    assert str(parse_image(image)) == normal


@pytest.mark.parametrize(
    ("wanted", "running", "match"),
    [
        ("index.docker.io/library/nginx:1.16", "nginx:1.16", True),
        ("nginx:1.16", "nginx:1.17", False),
        ("nginx", "nginx:latest", True),
        ("nginx:1.16", "registry.example.com/library/nginx:1.16", False),
        ("nginx:1.16", "nginx:1.16@sha256:abc", True),  # the tag it claims
        ("nginx@sha256:abc", "nginx:1.16@sha256:abc", True),
        ("nginx@sha256:abc", "nginx:1.16@sha256:def", False),
        ("nginx@sha256:abc", "nginx:1.16", False),  # a tag cannot prove the digest
        ("bitnami/nginx:1.16", "nginx:1.16", False),
    ],
)
def test_image_matching(wanted, running, match):
    assert parse_image(wanted).matches(parse_image(running)) is match


@pytest.mark.parametrize("image", ["", "Nginx", "nginx:", "nginx:bad tag", "a//b", "nginx@nope"])
def test_not_an_image(image):
    with pytest.raises(ActionPermanentError):
        parse_image(image)


@pytest.mark.parametrize(
    "key",
    ["app", "app.kubernetes.io/name", "postee.io/vulnerable", "a_b-c.d", "x" * 63],
)
def test_valid_label_keys(key):
    assert label_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("", "empty"),
        ("/name", "prefix"),
        ("Example.com/name", "DNS subdomain"),
        ("example.com/", "empty"),
        ("x" * 64, "63"),
        ("-app", "alphanumeric"),
        ("bad key", "alphanumeric"),
        ("a/b/c", "one '/'"),
    ],
)
def test_invalid_label_keys(key, problem):
    assert problem in (label_key_problem(key) or "")


@pytest.mark.parametrize("value", ["", "true", "v1.2_3-x", "a" * 63])
def test_valid_label_values(value):
    assert label_value_problem(value) is None


@pytest.mark.parametrize("value", ["a" * 64, "library/nginx", "nginx:1.16", "-x", "x-", "a b"])
def test_invalid_label_values(value):
    assert label_value_problem(value)


def test_workload_of_a_trivy_operator_report():
    report = sample("upstream", "trivy-operator-input.json")
    workload = event_workload(report)
    assert workload == Workload(
        "ReplicaSet", "default", "nginx-6d4cf56db6", "report labels trivy-operator.resource.*"
    )
    assert default_images(report) == ("index.docker.io/library/nginx:1.16",)


def test_workload_of_a_starboard_report():
    labels = {
        "starboard.resource.kind": "Deployment",
        "starboard.resource.name": "web",
        "starboard.resource.namespace": "shop",
    }
    workload = event_workload({"metadata": {"labels": labels}})
    assert workload is not None and (workload.kind, workload.namespace, workload.name) == (
        "Deployment",
        "shop",
        "web",
    )


def test_workload_of_a_tracee_event():
    event = sample("tracee", "trc-12-illegitimate-shell.json")
    workload = event_workload(event)
    assert workload is not None
    assert (workload.kind, workload.namespace, workload.name) == (
        "Pod",
        "web",
        "web-frontend-5d8f7c6b4-9qzlm",
    )
    assert default_images(event) == ("docker.io/library/nginx:1.21.0",)


def test_image_of_a_trivy_image_report():
    report = {
        "ArtifactName": "nginx:1.16",
        "ArtifactType": "container_image",
        "Metadata": {"RepoDigests": ["nginx@sha256:abc"]},
    }
    assert default_images(report) == ("nginx:1.16", "nginx@sha256:abc")
    # A filesystem scan (the upstream sample) names no image.
    assert default_images(sample("upstream", "trivy-input.json")) == ()


def test_plan_substitutes_every_value():
    report = sample("upstream", "trivy-operator-input.json")
    planned = plan(
        request(
            {
                "kube-target": "event.input.target",
                "kube-namespace": "event.input.metadata.namespace",
                "kube-config-file": "~/kube/event.input.metadata.name/config",
                "kube-actions": {
                    "labels": {
                        "owner": "event.input.metadata.labels.trivy-operator\\.resource\\.name"
                    },
                    "annotations": {"image": "event.input.report.artifact.repository"},
                    "delete-pods": "event.input.remove",
                },
                "dry-run": "true",
            },
            {**report, "target": "event-workload", "remove": "true"},
        )
    )
    assert planned.target == "event-workload" and planned.namespace == "default"
    assert planned.config_file and planned.config_file.endswith(
        "/kube/replicaset-nginx-6d4cf56db6-nginx/config"
    )
    assert not planned.config_file.startswith("~")
    assert planned.labels == {"owner": "nginx-6d4cf56db6"}
    assert planned.annotations == {"image": "library/nginx"}
    assert planned.delete_pods and planned.dry_run and not planned.unresolved


@pytest.mark.parametrize(
    ("params", "event", "message"),
    [
        ({"kube-label-selector": "a=b"}, {}, "needs kube-namespace"),
        ({"kube-namespace": "x"}, {}, "needs kube-label-selector"),
        (
            {"kube-namespace": "x", "kube-label-selector": "a", "kube-resource": "secrets"},
            {},
            "kube-resource",
        ),
        ({"kube-target": "nodes"}, {}, "kube-target"),
        ({"kube-target": "event-workload"}, {"a": 1}, "names no workload"),
        (
            {"kube-target": "event-workload", "kube-namespace": "other"},
            sample("upstream", "trivy-operator-input.json"),
            "outside kube-namespace",
        ),
        (
            {"kube-target": "event-workload"},
            {"Context": {"podName": "p", "podNamespace": "../kube-system"}},
            "not a valid Kubernetes name",
        ),
        (
            {"kube-target": "event-workload"},
            {
                "metadata": {
                    "labels": {
                        "trivy-operator.resource.kind": "Node",
                        "trivy-operator.resource.name": "n",
                    }
                }
            },
            "but no namespace",
        ),
        ({"kube-target": "image"}, {}, "needs kube-namespace"),
        ({"kube-target": "image", "kube-namespace": "*"}, {}, "names no image"),
        (
            {"kube-target": "image", "kube-namespace": "*", "kube-image": "Bad Image"},
            {},
            "not an image reference",
        ),
        (
            {
                "kube-namespace": "x",
                "kube-label-selector": "a",
                "kube-actions": {"delete-pods": "yes"},
            },
            {},
            "expected true or false",
        ),
        (
            {
                "kube-namespace": "x",
                "kube-label-selector": "a",
                "kube-actions": {"annotations": {"Bad/k": "v"}},
            },
            {},
            "annotation key",
        ),
    ],
)
def test_plan_refusals(params, event, message):
    with pytest.raises(ActionPermanentError) as refused:
        plan(request(params, event))
    assert message in str(refused.value)


def test_unresolved_tokens_are_reported():
    planned = plan(
        request(
            {
                "kube-namespace": "x",
                "kube-label-selector": "app=event.input.missing",
                "kube-actions": {"labels": {"a": "event.input.absent"}},
            }
        )
    )
    assert planned.selector == "app="
    assert planned.labels == {"a": ""}
    assert planned.summary()["unresolved_tokens"] == ["event.input.missing", "event.input.absent"]
