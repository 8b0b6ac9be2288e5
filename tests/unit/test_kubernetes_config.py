"""Loading kubernetes actions from cfg.yaml: upstream keys, the new ones, and their errors."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from streams import config
from streams.errors import ConfigError, ConfigErrors

REPO = Path(__file__).resolve().parents[2]

UPSTREAM = """
routes:
  - name: all
    actions: [label-pods]
actions:
  - name: label-pods
    type: Kubernetes
    enable: true
    kube-namespace: default
    kube-config-file: /root/.kube/config
    kube-label-selector: app=web
    kube-actions:
      labels:
        postee: flagged
      annotations:
        postee.io/note: event.input.SigMetadata.Name
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path) -> list[ConfigError]:
    with pytest.raises(ConfigError) as caught:
        config.load(path, path.parent)
    err = caught.value
    return err.errors if isinstance(err, ConfigErrors) else [err]


def action_text(body: str) -> str:
    return "routes:\n  - name: r\n    actions: [k]\nactions:\n  - name: k\n" + textwrap.indent(
        textwrap.dedent("type: kubernetes\nenable: true\n" + textwrap.dedent(body)), "    "
    )


def test_upstream_kubernetes_action_loads(tmp_path):
    cfg = config.load(write(tmp_path, UPSTREAM))
    action = cfg.actions["label-pods"]
    assert action.type == "kubernetes"
    assert action.params["kube-actions"]["labels"] == {"postee": "flagged"}


def test_new_keys_load_without_warnings(tmp_path, caplog):
    text = action_text("""
        kube-target: image
        kube-namespace: "*"
        kube-image: event.input.ArtifactName
        kube-actions:
          labels: {postee.io/vulnerable: "true", count: 3, flag: true}
          delete-pods: true
          scale-to-zero: event.input.remove
        dry-run: true
        timeout: 45s
        retries: 2
        retry-backoff: 1.5
    """)
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, text), tmp_path)
    assert caplog.records == []


def test_event_workload_needs_no_namespace_or_selector(tmp_path):
    text = action_text("""
        kube-target: event-workload
        kube-actions: {labels: {a: b}}
    """)
    assert config.load(write(tmp_path, text), tmp_path).actions["k"].params["kube-target"]


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ("kube-namespace: default\n", None, "kube-label-selector"),
        ("kube-label-selector: a=b\n", None, "kube-namespace"),
        ("kube-target: image\n", None, "kube-namespace"),
        ("kube-target: nodes\n", "kube-target", "selector, event-workload or image"),
        (
            "kube-namespace: d\nkube-label-selector: a\nkube-resource: secrets\n",
            "kube-resource",
            "pods",
        ),
        (
            "kube-namespace: d\nkube-label-selector: a\nkube-actions: {delete-pod: true}\n",
            "kube-actions",
            "delete-pod",
        ),
        (
            "kube-namespace: d\nkube-label-selector: a\nkube-actions: {scale-to-zero: maybe}\n",
            "kube-actions.scale-to-zero",
            "true or false",
        ),
        (
            "kube-namespace: d\nkube-label-selector: a\nkube-actions: {labels: [a]}\n",
            "kube-actions.labels",
            "object",
        ),
        ("kube-namespace: d\nkube-label-selector: a\nretries: -1\n", "retries", "minimum"),
    ],
)
def test_invalid_kubernetes_actions(tmp_path, body, key, words):
    (err,) = errors_of(write(tmp_path, action_text(body)))
    assert err.where == "action 'k'"
    assert err.key == key
    assert words in err.message


def test_unknown_key_is_a_warning(tmp_path, caplog):
    text = action_text("kube-namespace: d\nkube-label-selector: a\nkube-lables: {a: b}\n")
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, text), tmp_path)
    assert "unknown key 'kube-lables'" in caplog.text


@pytest.mark.parametrize(
    "example", ["cfg-k8s-label-vulnerable.yaml", "cfg-k8s-remove-vulnerable.yaml"]
)
def test_examples_load_without_warnings(example, caplog):
    path = REPO / "examples" / example  # `postee validate` runs on every example in test_config
    with caplog.at_level(logging.WARNING):
        cfg = config.load(path, path.parent / "rego-filters")
    assert caplog.records == []
    assert {a.type for a in cfg.actions.values()} == {"kubernetes"}
