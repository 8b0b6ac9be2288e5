"""Rate limits on the real broker, counted across two workers of one group (#17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.records import schema_errors
from tests.kafka_support import kind, post_event, start_worker, unique_prefix, value, write_config

pytestmark = pytest.mark.kafka

CFG = """
routes:
  - name: limited
    input: input.test == "route-limit"
    actions: [works]
    rate-limit: 3/h
  - name: via-a
    input: input.test == "action-limit-a"
    actions: [capped]
  - name: via-b
    input: input.test == "action-limit-b"
    actions: [capped]
  - name: summarised
    input: input.test == "summary"
    actions: [tell]
    rate-limit: 2/20s
    rate-limit-summary: true
actions:
  - {name: works, type: exec, enable: true, exec-script: echo "$POSTEE_EVENT_ID"}
  - {name: capped, type: exec, enable: true, exec-script: echo "$POSTEE_EVENT_ID", rate-limit: 3/h}
  - {name: tell, type: exec, enable: true, exec-script: echo "$POSTEE_EVENT"}
"""


@pytest.fixture(scope="module")
def workers(bootstrap: str, log_dir: Path, module_tmp: Path):
    path = write_config(module_tmp, CFG)
    prefix = unique_prefix("rate")
    pair = [start_worker(bootstrap, path, log_dir, "rate", prefix=prefix) for _ in range(2)]
    yield pair
    for worker in pair:
        worker.stop()


def post_spread(workers, events: list[dict]) -> list[str]:
    """Each event to one of the two bridges in turn; their ids spread the partitions."""
    return [post_event(workers[i % 2], event) for i, event in enumerate(events)]


async def test_a_route_limit_of_3_per_hour_runs_3_of_10_across_two_workers(workers, reader_factory):
    outcomes = await reader_factory(workers[0].topic("outcomes"))
    ids = post_spread(workers, [{"test": "route-limit", "n": n} for n in range(10)])
    routed = await outcomes.wait_for(
        lambda m: kind("routed")(m) and value(m)["event_id"] in ids, 10
    )
    assert {m.partition for m in routed} == {0, 1}  # both workers' partitions took events
    assert {c["deferred"] for m in routed for c in value(m)["commands"]} == {"rate-limit"}
    limited = await outcomes.wait_for(kind("rate_limited", route="limited"), count=7)
    ran = await outcomes.wait_for(kind("outcome", route="limited", status="succeeded"), count=3)
    ran_ids = {value(m)["event_id"] for m in ran}
    limited_ids = {value(m)["event_id"] for m in limited}
    assert len(ran_ids) == 3 and len(limited_ids) == 7 and ran_ids | limited_ids == set(ids)
    for record in limited:
        v = value(record)
        assert schema_errors("rate-limited", v) == []
        assert (v["scope"], v["action"], v["limit"], v["count"], v["per_s"]) == (
            "route",
            None,
            "3/h",
            3,
            3600,
        )
        assert v["window_start"] < v["window_end"] and v["summary"] is False
    assert sorted(value(m)["suppressed"] for m in limited) == list(range(1, 8))
    # Every command that did not run ends its story: a skipped outcome naming the limit.
    skipped = await outcomes.wait_for(kind("outcome", route="limited", status="skipped"), count=7)
    assert {value(m)["event_id"] for m in skipped} == limited_ids
    assert all(
        "rate limited: route 'limited' allows 3/h" in value(m)["detail"]["reason"] for m in skipped
    )
    assert (
        len([m for m in outcomes.seen if kind("outcome", route="limited", status="succeeded")(m)])
        == 3
    )


async def test_an_action_limit_counts_its_commands_from_every_route(workers, reader_factory):
    outcomes = await reader_factory(workers[0].topic("outcomes"))
    events = [{"test": f"action-limit-{'ab'[n % 2]}", "n": n} for n in range(10)]
    ids = post_spread(workers, events)
    limited = await outcomes.wait_for(kind("rate_limited", action="capped"), count=7)
    ran = await outcomes.wait_for(kind("outcome", action="capped", status="succeeded"), count=3)
    assert {value(m)["event_id"] for m in ran} | {value(m)["event_id"] for m in limited} == set(ids)
    assert {value(m)["scope"] for m in limited} == {"action"}
    assert {value(m)["route"] for m in limited} <= {"via-a", "via-b"}
    skipped = await outcomes.wait_for(kind("outcome", action="capped", status="skipped"), count=7)
    assert all("action 'capped' allows 3/h" in value(m)["detail"]["reason"] for m in skipped)


async def test_a_window_that_suppressed_events_ends_with_one_summary(workers, reader_factory):
    outcomes = await reader_factory(workers[0].topic("outcomes"))
    ids = post_spread(workers, [{"test": "summary", "n": n} for n in range(5)])
    limited = await outcomes.wait_for(kind("rate_limited", route="summarised"), count=3)
    assert all(value(m)["summary"] is True for m in limited)
    ran = await outcomes.wait_for(
        lambda m: (
            kind("outcome", route="summarised", status="succeeded")(m)
            and value(m)["event_id"] in ids
        ),
        count=2,
    )
    assert len(ran) == 2
    (summary,) = await outcomes.wait_for(
        lambda m: (
            kind("outcome", route="summarised")(m) and value(m)["event_id"].startswith("ratelimit:")
        ),
        deadline_s=60,
    )
    v = value(summary)
    assert v["status"] == "succeeded" and v["action"] == "tell"
    assert "3 events over the rate limit of route 'summarised' (2/20s)" in v["detail"]["stdout"]
    window_end = value(limited[0])["window_end"]
    assert v["started_at"] >= window_end  # sent when the window ended, not before
