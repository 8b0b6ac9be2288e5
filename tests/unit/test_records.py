"""Decoding what we consume, and the JSON contract of what we produce."""

from __future__ import annotations

import dataclasses
import json

import pytest

from streams import records
from streams.errors import EventError


def test_command_ids_are_deterministic_and_distinct():
    a = records.command_id("e1", "route", "action")
    assert a == records.command_id("e1", "route", "action")
    assert a != records.command_id("e1", "route", "other")
    assert a != records.command_id("e1", "route", "action", replay_id="r1")
    assert len(a) == 32


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff", "UTF-8"),
        (b"   ", "empty"),
        (b"{", "not JSON"),
        (b"[]", "JSON object"),
        (b'"text"', "JSON object"),
        (b'{"n": NaN}', "NaN"),
        (b'{"n": -Infinity}', "Infinity"),
        (b'{"n": 1e400}', "out of range"),
        (b'{"a": 1, "b": {"c": 1, "c": 2}}', "duplicate key 'c'"),
        (b'{"n": 123456789012345678901234567890}', "64-bit"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "JSON"),
    ],
)
def test_bad_events_raise_with_a_reason(raw, reason):
    with pytest.raises(EventError) as caught:
        records.parse_json_object(raw)
    assert caught.value.stage == "decode" and reason in caught.value.reason


def test_depth_is_bounded():
    deep = {"a": 1}
    for _ in range(records.MAX_JSON_DEPTH + 1):
        deep = {"x": deep}
    with pytest.raises(EventError, match="deeper"):
        records.parse_json_object(json.dumps(deep).encode())


def test_event_without_headers_gets_a_positional_id():
    event = records.decode_event(b'{"a":1}', None, topic="p.events", partition=2, offset=7)
    assert (
        event.event_id == "p.events:2:7" and event.source == "kafka" and event.payload == {"a": 1}
    )


def test_event_with_headers_keeps_its_id_and_route():
    headers = records.event_headers("abc", "http", "2026-01-01T00:00:00Z", only_route="r1")
    event = records.decode_event(b'{"a":1}', headers, topic="t", partition=0, offset=0)
    assert (event.event_id, event.source, event.only_route) == ("abc", "http", "r1")


def sample_command(**changes) -> records.Command:
    fields = dict(
        command_id="a" * 32,
        event_id="e",
        route="r",
        action="act",
        type="exec",
        config_version="0123456789abcdef",
        event={"k": "v"},
        event_ref=records.EventRef("p.events", 1, 7),
        issued_at=records.utc_now(),
    )
    return records.Command(**{**fields, **changes})


def test_command_round_trips_with_its_chain():
    chained = sample_command(then=(records.ChainStep("b" * 32, "next", "http"),))
    assert records.schema_errors("command", chained.to_dict()) == []
    decoded = records.decode_command(chained.to_json())
    assert decoded == chained and decoded.then[0].action == "next"
    following = decoded.following()
    assert following is not None
    assert (following.command_id, following.action, following.type) == ("b" * 32, "next", "http")
    assert following.event == decoded.event and following.then == ()
    assert [c.action for c in decoded.expanded()] == ["act", "next"]


def test_a_command_record_cannot_carry_parameters():
    forged = sample_command().to_dict() | {"params": {"exec-script": "echo $SECRET"}}
    with pytest.raises(EventError) as caught:
        records.decode_command(json.dumps(forged).encode())
    assert "params" in caught.value.reason


def test_a_command_without_its_event_must_name_the_record():
    by_ref = sample_command(event=None)
    assert records.schema_errors("command", by_ref.to_dict()) == []
    orphan = sample_command(event=None, event_ref=None).to_dict()
    assert records.schema_errors("command", orphan) != []


def test_command_ids_bind_the_record_position():
    one = records.command_id("e1", "r", "a", position="t:0:5")
    assert one == records.command_id("e1", "r", "a", position="t:0:5")
    assert one != records.command_id("e1", "r", "a", position="t:0:6")


def test_a_header_cannot_claim_a_positional_id_or_a_replay():
    headers = [
        ("postee-event-id", b"t:0:6"),
        ("postee-source", b"replay"),
        ("postee-replay-id", b"r1"),
        ("postee-replay-mode", b"dry-run"),
    ]
    event = records.decode_event(b'{"a":1}', headers, topic="p.events", partition=0, offset=5)
    assert event.event_id == "p.events:0:5" and event.position == "p.events:0:5"
    assert (event.source, event.replay_id, event.dry_run) == ("kafka", None, False)
    replayed = records.decode_event(b'{"a":1}', headers, topic="p.replay", partition=0, offset=5)
    assert (replayed.source, replayed.replay_id, replayed.dry_run) == ("replay", "r1", True)


def test_invalid_command_is_refused():
    bad = sample_command().to_dict() | {"type": "teleport"}
    with pytest.raises(EventError) as caught:
        records.decode_command(json.dumps(bad).encode())
    assert caught.value.stage == "decode-command" and "teleport" in caught.value.reason


def test_event_text_is_the_description_when_templated():
    assert sample_command().event_text == '{"k": "v"}'
    assert sample_command(template={"title": "t", "description": "d"}).event_text == "d"


def test_produced_records_match_their_schemas():
    now = records.utc_now()
    routed = records.Routed(
        event_id="e",
        source="http",
        routes=["r"],
        at=now,
        commands=[records.CommandRef("a" * 32, "r", "act", "exec")],
    )
    outcome = records.Outcome(
        event_id="e",
        command_id="a" * 32,
        route="r",
        action="act",
        type="exec",
        status="succeeded",
        attempt=1,
        started_at=now,
        finished_at=now,
        duration_ms=1.5,
        detail={"exit_code": 0},
    )
    dlq_text = records.DlqRecord.for_bytes(
        b"{oops", stage="decode", reason="not JSON", topic="t", partition=0, offset=1
    )
    dlq_binary = records.DlqRecord.for_bytes(b"\xff\x00", stage="decode", reason="not UTF-8")
    assert records.schema_errors("routed", routed.to_dict()) == []
    assert records.schema_errors("outcome", outcome.to_dict()) == []
    on_a_runner = dataclasses.replace(outcome, runner="node-a")
    assert records.schema_errors("outcome", on_a_runner.to_dict()) == []
    assert records.schema_errors("dlq", dlq_text.to_dict()) == []
    assert records.schema_errors("dlq", dlq_binary.to_dict()) == []
    assert dlq_text.encoding == "utf-8" and dlq_binary.encoding == "base64"
    redriven = records.Redriven(
        redrive_id="b" * 32,
        event_id="e",
        at=now,
        dlq={"topic": "p.dlq", "partition": 0, "offset": 3},
        stage="execute",
        reason="attempts exhausted",
        to={"topic": "p.actions.http", "partition": 1, "offset": 9},
        from_source=True,
    )
    assert records.schema_errors("redriven", redriven.to_dict()) == []
    assert records.schema_errors("routed", {**routed.to_dict(), "config_version": "abc"}) == []
    assert records.schema_errors("redriven", {**redriven.to_dict(), "to": {"topic": "t"}})
    assert records.schema_errors(
        "outcome", {**outcome.to_dict(), "status": "maybe"}
    )  # the schema bites
