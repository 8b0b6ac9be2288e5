"""The routing decision, pure: no Kafka."""

from __future__ import annotations

import textwrap

from streams import config, records
from tests.unit.engine_support import decide, evaluator_of

CFG = """
routes:
  - name: both
    input: input.kind == "x"
    actions: [one, two, disabled]
  - name: chain
    input: input.kind == "x"
    serialize-actions: true
    actions: [one, two]
  - name: other
    input: input.kind == "y"
    actions: [one]
actions:
  - {name: one, type: exec, enable: true, exec-script: "true"}
  - {name: two, type: exec, enable: true, exec-script: "true"}
  - {name: disabled, type: exec, enable: false, exec-script: "true"}
"""


def load(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    cfg = config.load(path)
    return cfg, evaluator_of(cfg)


def event(payload, event_id="e1", only=None, replay_id=None):
    return records.IncomingEvent(
        event_id=event_id,
        payload=payload,
        source="http",
        received_at=None,
        only_route=only,
        replay_id=replay_id,
    )


def test_one_command_per_enabled_action_and_chains(tmp_path):
    cfg, matcher = load(tmp_path)
    decision = decide(event({"kind": "x"}), cfg, matcher)
    assert decision.routed.routes == ["both", "chain"]
    sent = [(c.route, c.action, [t.action for t in c.then]) for c in decision.commands]
    assert sent == [("both", "one", []), ("both", "two", []), ("chain", "one", ["two"])]
    assert [(c.route, c.action, c.queued) for c in decision.routed.commands] == [
        ("both", "one", False),
        ("both", "two", False),
        ("chain", "one", False),
        ("chain", "two", True),
    ]
    assert decision.routed.skipped == [
        {"route": "both", "reason": "action 'disabled' is not enabled"}
    ]


def test_no_match_no_command(tmp_path):
    cfg, matcher = load(tmp_path)
    decision = decide(event({"kind": "z"}), cfg, matcher)
    assert decision.routed.routes == [] and decision.commands == ()


def test_only_route(tmp_path):
    cfg, matcher = load(tmp_path)
    decision = decide(event({"kind": "x"}, only="chain"), cfg, matcher)
    assert decision.routed.routes == ["chain"]


def test_same_event_same_ids_replay_differs(tmp_path):
    cfg, matcher = load(tmp_path)
    first = decide(event({"kind": "y"}), cfg, matcher).commands
    again = decide(event({"kind": "y"}), cfg, matcher).commands
    replayed = decide(event({"kind": "y"}, replay_id="r1"), cfg, matcher).commands
    assert [c.command_id for c in first] == [c.command_id for c in again]
    assert first[0].command_id != replayed[0].command_id and replayed[0].replay
