"""Silences: their records, when they hold, and how routing applies them (no broker)."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams import config, records, routing
from streams.errors import EventError
from streams.records import IncomingEvent, schema_errors
from streams.silences import Silence, decode_silence
from tests.unit.engine_support import evaluator_of

CFG = """
routes:
  - {name: pods, input: input.kind == "pod", actions: [label, page]}
  - {name: audit, input: input.kind == "pod", actions: [log]}
actions:
""" + "".join(
    f'  - {{name: {name}, type: exec, enable: true, exec-script: "true"}}\n'
    for name in ("label", "page", "log")
)

NOW = datetime(2030, 1, 1, 12, tzinfo=UTC)


def silence(sid: str = "sil-1", minutes: int = 10, **fields: object) -> Silence:
    defaults: dict[str, object] = {
        "start": records.iso(NOW - timedelta(minutes=1)),
        "end": records.iso(NOW + timedelta(minutes=minutes)),
        "author": "ana",
        "comment": "maintenance",
        "created_at": records.iso(NOW),
        "route": "pods",
    }
    return Silence(id=sid, **{**defaults, **fields})  # type: ignore[arg-type]


@pytest.fixture
def cfg(tmp_path: Path) -> config.PosteeConfig:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    return config.load(path)


def route(cfg: config.PosteeConfig, payload: dict, active: list[Silence]) -> routing.Decision:
    event = IncomingEvent("e1", payload, "http", None, position="t:0:7")
    rules = tuple(sorted(s.rule_key for s in active if s.rule_key))
    evaluation = evaluator_of(cfg).evaluate(json.dumps(payload).encode(), None, rules)
    return routing.decide(event, cfg, evaluation, 0, active)


def test_a_silence_round_trips_and_knows_its_state():
    s = silence()
    assert schema_errors("silence", s.to_dict()) == []
    assert decode_silence(s.to_json(), s.id) == s
    assert s.state(NOW) == "active" and s.state(NOW + timedelta(minutes=11)) == "ended"
    assert s.state(NOW - timedelta(minutes=2)) == "pending"
    ended = s.expired("bo", NOW)
    assert ended.end == records.iso(NOW) and ended.expired_by == "bo"
    assert not ended.active(NOW) and ended.state(NOW) == "expired"
    assert schema_errors("silence", ended.to_dict()) == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"route": None}, "not valid"),  # neither a route nor a rule
        ({"end": "2029-01-01T00:00:00.000Z"}, "cannot end before it starts"),
        ({"id": "other"}, "under key"),
    ],
)
def test_a_bad_silence_record_is_refused(change, words):
    value = {**silence().to_dict(), **change}
    with pytest.raises(EventError) as caught:
        decode_silence(json.dumps(value).encode(), "sil-1")
    assert words in caught.value.reason
    assert decode_silence(None, "sil-1") is None  # a tombstone


def test_a_route_silence_holds_that_route_only_and_says_so(cfg):
    decision = route(cfg, {"kind": "pod"}, [silence()])
    assert [c.route for c in decision.commands] == ["audit"]
    assert decision.routed.routes == ["pods", "audit"]
    assert decision.routed.silenced == [{"route": "pods", "silences": ["sil-1"]}]
    held = decision.silenced
    assert held is not None and schema_errors("silenced", held.to_dict()) == []
    assert held.routes == [{"route": "pods", "silences": ["sil-1"], "actions": ["label", "page"]}]
    assert held.silences[0]["comment"] == "maintenance"
    assert schema_errors("routed", decision.routed.to_dict()) == []


def test_a_rule_silence_is_evaluated_on_the_whole_event(cfg):
    # The routes read only input.kind; the silence reads input.namespace, which the
    # routes' pruned input would not have.
    rule = silence(route=None, rule='input.namespace == "dev"')
    held = route(cfg, {"kind": "pod", "namespace": "dev"}, [rule])
    assert held.commands == () and {r["route"] for r in held.routed.silenced} == {"pods", "audit"}
    free = route(cfg, {"kind": "pod", "namespace": "prod"}, [rule])
    assert len(free.commands) == 3 and free.silenced is None and free.routed.silenced == []


def test_route_and_rule_together_need_both(cfg):
    both = silence(rule='input.namespace == "dev"')
    decision = route(cfg, {"kind": "pod", "namespace": "dev"}, [both])
    assert [c.route for c in decision.commands] == ["audit"]
    decision = route(cfg, {"kind": "pod", "namespace": "prod"}, [both])
    assert len(decision.commands) == 3


def test_a_rule_that_does_not_compile_is_named_and_does_not_hide_the_others(cfg):
    broken = silence("sil-bad", route=None, rule="input.kind ==")
    good = silence("sil-good", route=None, rule='input.kind == "pod"')
    decision = route(cfg, {"kind": "pod"}, [broken, good])
    assert decision.commands == ()
    assert {r["route"]: r["silences"] for r in decision.routed.silenced} == {
        "pods": ["sil-good"],
        "audit": ["sil-good"],
    }
    (note,) = decision.routed.notes
    assert note["route"] == "(silences)" and "sil-bad" in note["note"]
