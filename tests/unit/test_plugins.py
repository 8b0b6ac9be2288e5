"""Dedupe keys, TTLs and batches: the pure parts of the plugins."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace

from streams import config, plugins, records, routing
from streams.rules import RouteMatcher

CFG = """
routes:
  - name: flood
    actions: [one, two]
    plugins:
      unique-message-props: [metadata.name, report.vulnerabilities.vulnerabilityID]
      unique-message-timeout: 2m
  - name: batched
    input: input.batched == true
    actions: [one]
    plugins:
      aggregate-message-number: 3
      aggregate-message-timeout: 10s
actions:
  - {name: one, type: exec, enable: true, exec-script: "true"}
  - {name: two, type: exec, enable: true, exec-script: "true"}
"""


def setup(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    cfg = config.load(path)
    return cfg, RouteMatcher.compile([r.as_rule() for r in cfg.routes])


def event(payload, event_id="e1"):
    return records.IncomingEvent(
        event_id=event_id, payload=payload, source="http", received_at=None
    )


def test_dedupe_key_is_per_route_and_takes_first_array_element(tmp_path):
    cfg, _ = setup(tmp_path)
    route = cfg.route("flood")
    report = {
        "metadata": {"name": "rs-1"},
        "report": {"vulnerabilities": [{"vulnerabilityID": "CVE-1"}, {"vulnerabilityID": "CVE-2"}]},
    }
    assert plugins.dedupe_key(route, report) == 'flood|["rs-1","CVE-1"]'
    assert plugins.dedupe_key(route, {"other": 1}) is None


def test_ttl_is_exact_at_event_time():
    entry = {"at_ms": 1_000_000}
    assert plugins.dedupe_passes(None, 5, 60)
    assert not plugins.dedupe_passes(entry, 1_000_000 + 59_999, 60)
    assert plugins.dedupe_passes(entry, 1_000_000 + 60_000, 60)
    assert not plugins.dedupe_passes(entry, 10**12, None)  # no timeout: never again


def test_routing_defers_to_plugins_and_notes_missing_props(tmp_path):
    cfg, matcher = setup(tmp_path)
    decision = routing.decide(event({"metadata": {"name": "x"}}), cfg, matcher, at_ms=42)
    (request,) = decision.plugin_requests
    assert request.kind == "dedupe" and request.ttl_s == 120 and request.at_ms == 42
    assert [c.action for c in request.commands] == ["one", "two"] and decision.commands == ()
    assert {c.deferred for c in decision.routed.commands} == {"dedupe"}
    assert records.schema_errors("plugin-request", request.to_dict()) == []
    plain = routing.decide(event({"nothing": 1}), cfg, matcher)
    assert [c.action for c in plain.commands] == ["one", "two"] and plain.plugin_requests == ()
    assert "none of the unique-message-props" in plain.routed.notes[0]["note"]
    assert records.schema_errors("routed", plain.routed.to_dict()) == []


def test_aggregation_requests_per_action_and_batches(tmp_path):
    cfg, matcher = setup(tmp_path)
    requests = [
        routing.decide(event({"batched": True, "i": i}, f"e{i}"), cfg, matcher).plugin_requests
        for i in range(3)
    ]
    keys = {r.key for rs in requests for r in rs if r.route == "batched"}
    assert keys == {"batched|one"}
    batch, full = None, False
    for rs in requests:
        (agg,) = [r for r in rs if r.kind == "aggregate"]
        batch, full = plugins.add_to_batch(batch, agg, now_ms=1000)
    assert full and len(batch["commands"]) == 3
    command = plugins.batch_command(batch)
    assert command.batch_event_ids == ("e0", "e1", "e2")
    assert command.event_id == f"batch:{batch['batch_id']}"
    descriptions = json.loads(command.template["description"])
    assert [json.loads(d)["i"] for d in descriptions] == [0, 1, 2]
    assert records.schema_errors("command", command.to_dict()) == []


def test_a_batch_closes_before_its_table_entry_outgrows_a_record(tmp_path):
    cfg, matcher = setup(tmp_path)
    big = {"batched": True, "pad": "x" * 100_000}
    incoming = replace(event(big, "e-big"), position="p.events:0:9")
    (agg,) = [
        r for r in routing.decide(incoming, cfg, matcher).plugin_requests if r.kind == "aggregate"
    ]
    batch, full = plugins.add_to_batch(None, agg, now_ms=1000, max_bytes=50_000)
    assert not full and batch["commands"][0]["event"] is None  # kept by reference
    assert batch["commands"][0]["event_ref"] == {"topic": "p.events", "partition": 0, "offset": 9}
    small = {"batched": True, "pad": "y" * 60_000}  # under the inline bound: kept inline
    (agg,) = [
        r
        for r in routing.decide(event(small, "e1"), cfg, matcher).plugin_requests
        if r.kind == "aggregate"
    ]
    batch, full = plugins.add_to_batch(batch, agg, now_ms=1000, max_bytes=50_000)
    # Full by size at 2 events, before the route's aggregate-message-number of 3.
    assert full and len(batch["commands"]) == 2 and batch["bytes"] >= 50_000
    assert batch["commands"][1]["event"] == small


def test_window_due_by_time():
    batch = {"opened_ms": 1000, "timeout_s": 10}
    assert not plugins.batch_due(batch, 10_999) and plugins.batch_due(batch, 11_000)
    assert not plugins.batch_due({"opened_ms": 0, "timeout_s": None}, 10**12)
