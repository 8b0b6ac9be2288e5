"""Flow control in the executor (#17): a rate-limited target holds up no other action, and
retries scheduled on the retry topic survive a kill -9."""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest

from streams.retries import HEADER_RETRY_AT
from tests.http_sink import Sink, http_sink
from tests.kafka_support import (
    DEADLINE_S,
    STARTUP_DEADLINE_S,
    outcomes_of,
    post_event,
    start_worker,
    unique_prefix,
    value,
)

pytestmark = pytest.mark.kafka

RETRY_AFTER_S = 4


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


def _at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def two_actions(directory: Path, base_url: str) -> Path:
    """Two http actions on the one http command topic: one rate limited, one fine."""
    config = directory / "cfg-two.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: limited
            input: input.test == "limited"
            actions: [limited-post]
          - name: other
            input: input.test == "other"
            actions: [other-post]
        actions:
          - name: limited-post
            type: http
            enable: true
            url: {base_url}/limited/event.input.path
            concurrency: 1
            retries: 2
            retry-backoff: 0.05
          - name: other-post
            type: http
            enable: true
            url: {base_url}/other/event.input.path
    """)
    )
    return config


async def test_429_retry_after_is_honoured_and_no_other_action_waits(
    bootstrap, module_tmp, log_dir, sink, reader_factory
):
    worker = start_worker(bootstrap, two_actions(module_tmp, sink.base_url), log_dir, "limit")
    try:
        outcomes = await reader_factory(worker.topic("outcomes"))
        # More rate-limited commands than the old fixed four slots of the http type.
        limited = []
        for _ in range(6):
            path = f"l-{uuid.uuid4().hex[:6]}"
            sink.script[f"/limited/{path}"] = [429]
            sink.extra_headers[f"/limited/{path}"] = {"Retry-After": str(RETRY_AFTER_S)}
            limited.append(post_event(worker, {"test": "limited", "path": path}))
        for event_id in limited:  # every one answered 429 once: its retry is scheduled
            await outcomes.wait_for(outcomes_of(event_id))
        others = [post_event(worker, {"test": "other", "path": f"o-{i}"}) for i in range(20)]
        for event_id in others:
            await outcomes.wait_for(outcomes_of(event_id))
        for event_id in limited:
            await outcomes.wait_for(outcomes_of(event_id), count=2)
    finally:
        worker.stop()

    def of(event_id: str) -> list[dict[str, object]]:
        return [value(m) for m in outcomes.seen if outcomes_of(event_id)(m)]

    retries_started = []
    for event_id in limited:
        first, second = of(event_id)
        assert (first["attempt"], first["status"], first["final"]) == (1, "failed", False)
        assert first["detail"]["status_code"] == 429
        assert (second["attempt"], second["status"], second["final"]) == (2, "succeeded", True)
        waited_s = _at(second["started_at"]) - _at(first["finished_at"])
        assert waited_s >= RETRY_AFTER_S - 0.1, f"Retry-After not honoured: {waited_s:.2f}s"
        retries_started.append(_at(second["started_at"]))
    other_done = []
    for event_id in others:
        (outcome,) = of(event_id)
        assert outcome["status"] == "succeeded"
        other_done.append(_at(outcome["finished_at"]))
    # The other action ran while the limited one waited: nothing of it waited for a retry.
    assert max(other_done) < min(retries_started)


def flaky(directory: Path, base_url: str) -> Path:
    config = directory / "cfg-flaky.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: flaky
            input: input.test == "flaky"
            actions: [flaky-post]
        actions:
          - name: flaky-post
            type: http
            enable: true
            url: {base_url}/flaky/event.input.path
            retries: 3
            retry-backoff: 16
    """)
    )
    return config


# Two worker starts, a kill and a session expiry: past the suite's 120 s under load.
@pytest.mark.timeout(300)
async def test_kill_9_while_retries_are_scheduled_loses_none(
    bootstrap, module_tmp, log_dir, sink, reader_factory
):
    config = flaky(module_tmp, sink.base_url)
    prefix = unique_prefix("retrykill")
    fast_rejoin = {"POSTEE_SESSION_TIMEOUT_S": "10"}
    worker = start_worker(bootstrap, config, log_dir, "retrykill", fast_rejoin, prefix=prefix)
    paths = [f"k-{uuid.uuid4().hex[:6]}" for _ in range(10)]
    try:
        for path in paths:
            sink.script[f"/flaky/{path}"] = [503]
        events = [post_event(worker, {"test": "flaky", "path": path}) for path in paths]
        outcomes = await reader_factory(worker.topic("outcomes"))
        retry_topic = await reader_factory(worker.topic("retry"))
        for event_id in events:
            await outcomes.wait_for(outcomes_of(event_id))
        scheduled = await retry_topic.wait_for(lambda m: True, count=len(events))
        assert all(HEADER_RETRY_AT in dict(m.headers) for m in scheduled)
    finally:
        worker.process.kill()  # kill -9, with every retry still waiting for its time
        worker.process.wait()
    # Backoff of the first retry: 8 to 16 s, so none had run yet.
    assert [len(sink.on(f"/flaky/{p}")) for p in paths] == [1] * len(paths)

    again = start_worker(bootstrap, config, log_dir, "retrykill", fast_rejoin, prefix=prefix)
    try:
        deadline_s = STARTUP_DEADLINE_S + DEADLINE_S
        for event_id in events:
            await outcomes.wait_for(
                lambda m, e=event_id: outcomes_of(e)(m) and value(m)["final"], deadline_s=deadline_s
            )
    finally:
        again.stop()
    for event_id in events:
        records = [value(m) for m in outcomes.seen if outcomes_of(event_id)(m)]
        # A record read again after the kill is `skipped` (at-least-once), never run twice.
        ran = [r for r in records if r["final"] and r["status"] != "skipped"]
        shown = [(r["attempt"], r["status"], r["final"]) for r in records]
        assert len(ran) == 1 and ran[0]["status"] == "succeeded", shown
        assert ran[0]["attempt"] == 2, shown  # the second attempt, not a fresh first one
    assert [len(sink.on(f"/flaky/{p}")) for p in paths] == [2] * len(paths)
