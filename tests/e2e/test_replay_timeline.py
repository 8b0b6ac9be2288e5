"""Replay a window of events through changed routes, and rebuild an event's timeline."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.http_sink import Sink, http_sink
from tests.kafka_support import Worker, start_worker, unique_prefix, value

pytestmark = pytest.mark.kafka


def config(directory: Path, name: str, limit: int, sink_url: str = "http://127.0.0.1:9") -> Path:
    """Route `low` runs an exec action for events with n < limit; route `story` runs an
    exec and an http action (the sink answers 503 once, so one attempt is retried)."""
    path = directory / name
    path.write_text(
        textwrap.dedent(f"""
        routes:
          - name: low
            input: input.n < {limit}
            actions: [append]
          - name: story
            input: input.story == true
            actions: [append, notify]
        actions:
          - name: append
            type: exec
            enable: true
            env: [OUT={directory / "appended.log"}]
            exec-script: printf '%s\\n' "$POSTEE_EVENT_ID" >> "$OUT"
          - name: notify
            type: http
            enable: true
            url: {sink_url}/story
            retries: 2
            retry-backoff: 0.05
    """)
    )
    return path


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


def post(worker: Worker, event: dict) -> str:
    response = httpx.post(worker.base_url + "/", json=event, timeout=10)
    assert response.status_code == 202
    return str(response.json()["id"])


def kind_is(kind: str, **fields):
    return lambda m: (
        (v := value(m))["kind"] == kind and all(v.get(k) == x for k, x in fields.items())
    )


async def test_replay_dry_run_then_execute_with_changed_routes(
    bootstrap, log_dir, module_tmp, reader_factory
):
    prefix = unique_prefix("replay")
    first = start_worker(
        bootstrap, config(module_tmp, "v1.yaml", 10), log_dir, "replay", prefix=prefix
    )
    batch = uuid.uuid4().hex
    try:
        window_start = datetime.now(UTC)
        ids = [post(first, {"n": n, "batch": batch}) for n in range(50)]
        outcomes = await reader_factory(first.topic("outcomes"))
        originals = await outcomes.wait_for(kind_is("outcome"), count=10)
        window_end = datetime.now(UTC)
    finally:
        first.stop()
    log = module_tmp / "appended.log"
    assert sorted(log.read_text().split()) == sorted(ids[:10])
    original_ids = {value(m)["command_id"] for m in originals}

    # The route now takes n < 30; a new worker with the new config runs the replay.
    second_config = config(module_tmp, "v2.yaml", 30)
    worker = start_worker(bootstrap, second_config, log_dir, "replay", prefix=prefix)
    try:
        window = ["--from", window_start.isoformat(), "--to", window_end.isoformat()]
        dry = await worker.cli_async("replay", *window)
        assert dry.returncode == 0, dry.stderr + dry.stdout
        assert "50 replayed" in dry.stdout and "commands issued: 30" in dry.stdout
        dry_runs = await outcomes.wait_for(kind_is("outcome", status="dry_run"), count=30)
        assert {value(m)["event_id"] for m in dry_runs} == set(ids[:30])
        assert sorted(log.read_text().split()) == sorted(ids[:10])  # no side effect
        assert not original_ids & {value(m)["command_id"] for m in dry_runs}
        assert all(value(m)["replay_id"] for m in dry_runs)

        executed = await worker.cli_async("replay", *window, "--route", "low", "--execute")
        assert executed.returncode == 0, executed.stderr + executed.stdout
        assert "30 replayed" in executed.stdout  # --route keeps what the route matches
        runs = await outcomes.wait_for(
            kind_is("outcome", status="succeeded", dry_run=False), count=40
        )
        replayed = [value(m) for m in runs if value(m)["replay_id"]]
        assert len(replayed) == 30 and not original_ids & {v["command_id"] for v in replayed}
        assert sorted(log.read_text().split()) == sorted(ids[:10] + ids[:30])
        # The original outcomes are still there, unchanged.
        assert {
            value(m)["command_id"]
            for m in outcomes.seen
            if value(m).get("replay_id") is None and value(m)["kind"] == "outcome"
        } == original_ids
    finally:
        worker.stop()


async def test_replay_picks_exactly_the_window(bootstrap, log_dir, module_tmp, reader_factory):
    cfg = config(module_tmp, "window.yaml", 0)
    worker = start_worker(bootstrap, cfg, log_dir, "window")
    try:
        groups = [[post(worker, {"n": 100, "g": g, "i": i}) for i in range(5)] for g in range(3)]
        events = await reader_factory(worker.topic("events"))
        stored = await events.wait_for(lambda m: True, count=15)
        times = {m.key.decode(): m.timestamp for m in stored}
        middle = groups[1]
        start = min(times[i] for i in middle)
        end = max(times[i] for i in middle)
        assert start > max(times[i] for i in groups[0]) and end < min(
            times[i] for i in groups[2]
        ), "the groups share a millisecond; the window cannot separate them"
        iso = [
            datetime.fromtimestamp(t / 1000, UTC).isoformat(timespec="milliseconds")
            for t in (start, end)
        ]
        result = await worker.cli_async("replay", "--from", iso[0], "--to", iso[1])
        assert result.returncode == 0, result.stderr + result.stdout
        replays = await reader_factory(worker.topic("replay"))
        replayed = await replays.wait_for(lambda m: True, count=5)
        assert sorted(m.key.decode() for m in replayed) == sorted(middle)
        assert "5 replayed" in result.stdout
    finally:
        worker.stop()


async def test_timeline_of_an_event_with_two_actions_one_retried(
    bootstrap, log_dir, module_tmp, sink
):
    cfg = config(module_tmp, "story.yaml", 0, sink.base_url)
    worker = start_worker(bootstrap, cfg, log_dir, "story")
    try:
        sink.script["/story"] = [503]
        event_id = post(worker, {"n": 100, "story": True})
        await sink.wait_for("/story", count=2)
        end = datetime.now(UTC).timestamp() + 45
        while True:  # the last outcome may land just after the sink's second answer
            result = await worker.cli_async("timeline", event_id, "--json")
            entries = [json.loads(line) for line in result.stdout.splitlines()]
            if (
                sum(e["kind"] == "outcome" for e in entries) >= 3
                or datetime.now(UTC).timestamp() > end
            ):
                break
        assert result.returncode == 0, result.stderr
        steps = [
            (
                e["kind"],
                e["value"].get("action"),
                e["value"].get("attempt"),
                e["value"].get("status"),
            )
            for e in entries
            if e["kind"] != "received"
        ]
        assert [e["kind"] for e in entries][:2] == ["received", "routed"]
        assert sorted(s for s in steps if s[0] == "command") == [
            ("command", "append", 1, None),
            ("command", "notify", 1, None),
        ]
        notify = [s for s in steps if s[0] == "outcome" and s[1] == "notify"]
        assert notify == [("outcome", "notify", 1, "failed"), ("outcome", "notify", 2, "succeeded")]
        assert ("outcome", "append", 1, "succeeded") in steps
        times = [e["at"] for e in entries]
        assert times == sorted(times)
        table = await worker.cli_async("timeline", event_id)
        assert "routes: story" in table.stdout and "notify attempt 2: succeeded" in table.stdout

        unknown = await worker.cli_async("timeline", uuid.uuid4().hex)
        assert unknown.returncode != 0 and "no record of event" in unknown.stderr

        window = await worker.cli_async("timeline", "--since", "10m", "--json", "--route", "story")
        rows = [json.loads(line) for line in window.stdout.splitlines()]
        assert [r["event_id"] for r in rows] == [event_id]
        assert rows[0]["outcomes"] == {"succeeded": 2} and rows[0]["commands"] == 2
    finally:
        worker.stop()
