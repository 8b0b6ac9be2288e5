"""Action agents run the action their own config defines, never what a record says."""

from __future__ import annotations

import textwrap
from dataclasses import replace

from streams import config, records, routing, trust
from streams.rules import RouteMatcher

CFG = """
routes:
  - name: r
    input: input.kind == "x"
    actions: [one, web]
  - name: other
    actions: [web]
actions:
  - {name: one, type: exec, enable: true, exec-script: "echo configured"}
  - {name: web, type: http, enable: true, url: "http://127.0.0.1:9/"}
  - {name: idle, type: exec, enable: false, exec-script: "true"}
"""


def loaded(tmp_path, text=CFG):
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(text))
    return config.load(path)


def routed_command(cfg):
    matcher = RouteMatcher.compile([r.as_rule() for r in cfg.routes])
    incoming = records.IncomingEvent(
        event_id="e1",
        payload={"kind": "x"},
        source="http",
        received_at=None,
        position="p.events:2:40",
    )
    decision = routing.decide(incoming, cfg, matcher)
    return next(c for c in decision.commands if c.action == "one")


def test_commands_name_the_action_and_the_config_version(tmp_path):
    cfg = loaded(tmp_path)
    command = routed_command(cfg)
    assert command.config_version == cfg.version and len(cfg.version) == 16
    assert "params" not in command.to_dict()
    assert command.event_ref == records.EventRef("p.events", 2, 40)
    assert command.command_id == records.command_id("e1", "r", "one", None, "p.events:2:40")
    spec, refusal = trust.configured_action(cfg, "exec", command)
    assert refusal is None and spec is not None
    assert spec.params["exec-script"] == "echo configured"


def test_the_version_follows_the_file(tmp_path):
    first = loaded(tmp_path).version
    assert loaded(tmp_path).version == first
    assert loaded(tmp_path, CFG.replace("configured", "changed")).version != first


def test_unknown_misplaced_or_disabled_actions_are_refused(tmp_path):
    cfg = loaded(tmp_path)
    command = routed_command(cfg)
    cases = {
        "ghost": (replace(command, action="ghost"), "exec"),
        "http topic": (replace(command, type="http"), "http"),
        "wrong topic": (command, "http"),
        "disabled": (replace(command, action="idle"), "exec"),
        "no route": (replace(command, route="nowhere"), "exec"),
        "not listed": (replace(command, route="other"), "exec"),
    }
    reasons = {}
    for name, (forged, kind) in cases.items():
        spec, refusal = trust.configured_action(cfg, kind, forged)
        assert spec is None, name
        reasons[name] = refusal
    assert "'ghost' is not defined in this worker's config" in reasons["ghost"]
    assert "is of type 'exec'" in reasons["http topic"]
    assert "is of type 'exec'" in reasons["wrong topic"]
    assert "not enabled" in reasons["disabled"]
    assert "route 'nowhere' is not defined" in reasons["no route"]
    assert "does not list action 'one'" in reasons["not listed"]


def test_another_config_version_runs_as_defined_now_and_says_so(tmp_path):
    cfg = loaded(tmp_path)
    command = replace(routed_command(cfg), config_version="f" * 16)
    spec, refusal = trust.configured_action(cfg, "exec", command)
    assert spec is not None and refusal is None
    assert trust.version_note(cfg, command) == {
        "config_version": cfg.version,
        "issued_under_config_version": "f" * 16,
    }
    assert trust.version_note(cfg, routed_command(cfg)) == {}
