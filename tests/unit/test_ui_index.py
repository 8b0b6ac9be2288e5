"""The UI's pure parts: the index fold, its filters and counts, escaping, exposure rules."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streams import records
from streams.config import PosteeConfig
from streams.errors import ConfigError
from streams.settings import UiSettings
from streams.timeline import Entry
from streams.ui import auth, pages
from streams.ui.index import Index, Query
from streams.ui.server import check_exposure
from streams.ui.titles import event_title

NOW_MS = int(time.time() * 1000)


def event(index: Index, payload: dict, offset: int, at_ms: int = NOW_MS) -> str:
    event_id = records.new_event_id()
    headers = records.event_headers(event_id, "http", records.utc_now())
    index.apply(
        "events",
        event_id.encode(),
        json.dumps(payload).encode(),
        headers,
        at_ms,
        ("p.events", 0, offset),
    )
    return event_id


def routed(
    index: Index, event_id: str, routes: list[str], actions: list[str], replay_id=None
) -> list[str]:
    refs = [
        records.CommandRef(records.command_id(event_id, r, a, replay_id), r, a, "exec")
        for r in routes
        for a in actions
    ]
    value = records.Routed(event_id, "http", routes, refs, records.utc_now(), replay_id=replay_id)
    index.apply("outcomes", event_id.encode(), value.to_json(), [], NOW_MS, ("p.outcomes", 0, 0))
    return [r.command_id for r in refs]


def outcome(
    index: Index, event_id: str, command_id: str, status: str, attempt=1, final=True, replay_id=None
):
    value = records.Outcome(
        event_id, command_id, "r", "act", "exec", status, attempt, "t", "t", 1.0,
        final=final, replay_id=replay_id, dry_run=status == "dry_run",
    )  # fmt: skip
    index.apply("outcomes", event_id.encode(), value.to_json(), [], NOW_MS, ("p.outcomes", 0, 1))


def test_rows_follow_routing_and_outcomes():
    index = Index(window_s=3600, max_events=100)
    first = event(index, {"title": "first"}, 0)
    assert index.rows[first].has_status("pending")  # not routed yet
    [command] = routed(index, first, ["r"], ["act"])
    assert index.rows[first].commands[command].status == "pending"
    outcome(index, first, command, "failed", attempt=1, final=False)
    assert index.rows[first].commands[command].status == "pending"  # a retry follows
    outcome(index, first, command, "succeeded", attempt=2)
    row = index.rows[first].as_dict()
    assert row["title"] == "first" and row["routes"] == ["r"] and row["source"] == "http"
    assert row["commands"][0] | {"status": "succeeded", "attempts": 2} == row["commands"][0]
    outcome(index, first, command, "skipped")  # a redelivery does not hide the result
    assert index.rows[first].commands[command].status == "succeeded"


def test_filters_and_counts():
    index = Index(window_s=3600, max_events=100)
    ok, bad, other = (event(index, {"n": n}, n) for n in range(3))
    outcome(index, ok, routed(index, ok, ["r1"], ["a"])[0], "succeeded")
    outcome(index, bad, routed(index, bad, ["r1", "r2"], ["b"])[0], "failed")
    routed(index, other, [], [])
    ids = lambda q: [r.event_id for r in index.select(q, 10)]  # noqa: E731
    assert ids(Query()) == [other, bad, ok]  # newest first
    assert ids(Query(route="r1")) == [bad, ok]
    assert ids(Query(action="b")) == [bad]
    assert ids(Query(status="failed")) == [bad]
    assert ids(Query(status="pending")) == [bad]  # its second command has no outcome yet
    assert ids(Query(ids=frozenset({ok}))) == [ok]
    # A day either side: the ids carry the real time, and the suite may run long before this.
    assert ids(Query(since_ms=NOW_MS + 86_400_000)) == []
    assert ids(Query(until_ms=NOW_MS - 86_400_000)) == []
    counts = index.counts(Query())
    assert counts["routes"] == {"r1": 2, "r2": 1}
    assert counts["actions"] == {"a": 1, "b": 2}
    assert counts["statuses"] == {"succeeded": 1, "failed": 1, "pending": 1}


def test_the_index_is_bounded_and_does_not_bring_back_evicted_rows():
    index = Index(window_s=3600, max_events=3)
    for n in range(5):  # bare records (no headers): positional ids, arrival = record time
        index.apply("events", None, b"{}", [], NOW_MS + n, ("p.events", 0, n))
    ids = [f"p.events:0:{n}" for n in range(5)]
    assert list(index.rows) == ids[2:]
    routed(index, ids[0], ["r"], ["a"])  # a late record of an evicted event
    assert ids[0] not in index.rows


def test_template_titles_dlq_entries_and_redrives():
    index = Index(window_s=3600, max_events=10)
    event_id = event(index, {"SigMetadata": {"Name": "Anti-Debugging"}}, 0)
    assert index.rows[event_id].title == "Anti-Debugging"
    command = records.Command(
        "c" * 32, event_id, "r", "a", "exec", "v", {}, "t", template={"title": "From the template"}
    )
    index.apply("command", None, command.to_json(), [], NOW_MS, ("p.actions.exec", 0, 0))
    assert index.rows[event_id].title == "From the template"
    dlq = records.DlqRecord.for_bytes(b"{}", stage="execute", reason="exhausted", event_id=event_id)
    index.apply("dlq", None, dlq.to_json(), [], NOW_MS, ("p.dlq", 1, 7))
    assert index.rows[event_id].dlq == 1 and index.dlq_entry(1, 7) is not None
    redriven = records.Redriven(
        "d" * 32, event_id, "t", {"topic": "p.dlq", "partition": 1, "offset": 7}, "execute",
        "exhausted", {"topic": "p.actions.exec", "partition": 0, "offset": 1}, True,
    )  # fmt: skip
    index.apply("outcomes", None, redriven.to_json(), [], NOW_MS, ("p.outcomes", 0, 5))
    assert index.dlq_entry(1, 7).as_dict()["redrives"][0]["to"]["offset"] == 1  # type: ignore[union-attr]


def test_replay_outcomes_are_counted_per_replay():
    index = Index(window_s=3600, max_events=10)
    event_id = event(index, {}, 0)
    [command] = routed(index, event_id, ["r"], ["a"], replay_id="rp")
    outcome(index, event_id, command, "dry_run", replay_id="rp")
    assert index.replay_statuses["rp"] == {"dry_run": 1}
    assert index.rows[event_id].commands[command].dry_run


def test_titles_from_the_usual_fields():
    assert event_title({"output": "shell in container"}) == "shell in container"
    assert event_title({"ArtifactName": "alpine:3.10"}) == "alpine:3.10"
    assert event_title({"x": 1}) == '{"x": 1}'
    assert len(event_title({"title": "t" * 500})) == 120


def test_pages_escape_record_content():
    hostile = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    at = datetime.now(UTC)
    entries = [
        Entry(at, "p.events", 0, 0, "received", {"title": hostile}, {"postee-source": hostile}),
        Entry(at, "p.outcomes", 0, 1, "routed", {"routes": [hostile], "config_version": hostile}),
    ]
    page = pages.timeline_page(hostile, entries, "p", signed_in=True)
    assert "<script>window" not in page and "<img" not in page
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page
    config = PosteeConfig(Path("cfg.yaml"), (), {}, {})
    assert "<img" not in pages.login_page(hostile, hostile)
    assert "<script>window" not in pages.events_page(config, hostile, signed_in=False)


def test_exposure_and_redirect_rules():
    check_exposure(UiSettings())  # loopback without a token: allowed
    check_exposure(UiSettings(host="0.0.0.0", token="s"))
    with pytest.raises(ConfigError, match="POSTEE_UI_TOKEN"):
        check_exposure(UiSettings(host="0.0.0.0"))
    assert auth._next("/events/x?y=1") == "/events/x?y=1"
    assert auth._next("//evil.example/") == "/" and auth._next("https://evil.example/") == "/"
    assert auth._next("/\\evil.example") == "/"
    assert auth.session_value("s") != "s" and len(auth.session_value("s")) == 64
