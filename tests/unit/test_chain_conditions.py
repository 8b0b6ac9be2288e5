"""`on:` conditions of serialized routes: which step follows a terminal status."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streams import config, records, routing
from streams.evaluator import Evaluation
from streams.records import IncomingEvent

CFG = """
routes:
  - name: contain
    serialize-actions: true
    actions: [label, {name: scale, on: success}, {name: page, on: failure}, log]
actions:
  - {name: label, type: exec, enable: true, exec-script: "true"}
  - {name: scale, type: kubernetes, enable: true, kube-namespace: x, kube-label-selector: a=b,
     kube-actions: {labels: {quarantined: "yes"}}}
  - {name: page, type: exec, enable: true, exec-script: "true"}
  - {name: log, type: exec, enable: true, exec-script: "true"}
"""


@pytest.fixture
def head(tmp_path: Path) -> records.Command:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    cfg = config.load(path, tmp_path)
    event = IncomingEvent("e1", {"a": 1}, "http", None, position="t:0:1")
    decision = routing.decide(event, cfg, Evaluation(matched=frozenset({"contain"})))
    (command,) = decision.commands
    return command


def test_the_chain_carries_each_steps_condition(head):
    assert [(s.action, s.on) for s in head.then] == [
        ("scale", "success"),
        ("page", "failure"),
        ("log", "always"),
    ]
    assert records.schema_errors("command", head.to_dict()) == []


def test_after_success_the_on_failure_step_is_skipped_with_its_reason(head):
    skipped, following = head.after("succeeded")
    assert skipped == [] and following is not None and following.action == "scale"
    skipped, last = following.after("succeeded")
    assert [(c.action, why) for c, why in skipped] == [
        ("page", "previous step (action 'scale') succeeded; this step runs on failure")
    ]
    assert last is not None and last.action == "log" and last.then == ()
    assert last.after("succeeded") == ([], None)


def test_after_a_failure_only_the_failure_step_and_always_run(head):
    skipped, following = head.after("failed")
    assert [(c.action, why) for c, why in skipped] == [
        ("scale", "previous step (action 'label') failed; this step runs on success")
    ]
    assert following is not None and following.action == "page"
    # A skipped step is transparent: `page` follows the failure of `label`.
    assert skipped[0][0].command_id != following.command_id


def test_a_dry_run_counts_as_success(head):
    skipped, following = head.after("dry_run")
    assert skipped == [] and following is not None and following.action == "scale"
