"""Noise control on the real broker: silences, conditional chains, rate limits (#17)."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from streams.records import schema_errors
from tests.kafka_support import (
    DEADLINE_S,
    TopicReader,
    Worker,
    kind,
    post_event,
    start_worker,
    value,
    write_config,
)

pytestmark = pytest.mark.kafka

CFG = """
routes:
  - {name: quiet, input: input.test == "silence", actions: [works]}
  - name: chain-fail
    input: input.test == "chain"
    serialize-actions: true
    actions: [fails, {name: scale, on: success}, {name: page, on: failure}, works]
  - name: chain-ok
    input: input.test == "chain"
    serialize-actions: true
    actions: [works, {name: scale, on: success}, {name: page, on: failure}]
actions:
  - {name: works, type: exec, enable: true, exec-script: echo "$POSTEE_EVENT_ID"}
  - {name: fails, type: exec, enable: true, exec-script: exit 3}
  - {name: scale, type: exec, enable: true, exec-script: echo scaled}
  - {name: page, type: exec, enable: true, exec-script: echo paged}
"""


@pytest.fixture(scope="module")
def worker(bootstrap: str, log_dir: Path, module_tmp: Path):
    started = start_worker(bootstrap, write_config(module_tmp, CFG), log_dir, "noise")
    yield started
    started.stop()


def active_silences(worker: Worker) -> float:
    text = httpx.get(worker.base_url + "/metrics", timeout=5).text
    found = re.search(r"^postee_silences_active (\S+)$", text, re.MULTILINE)
    assert found, "the worker exposes no postee_silences_active"
    return float(found.group(1))


def await_active(worker: Worker, count: int) -> None:
    """Poll the worker's own view of the silences until it applies `count` of them."""
    end = time.monotonic() + DEADLINE_S
    while active_silences(worker) != count:
        assert time.monotonic() < end, f"the worker never applied {count} silence(s)"
        time.sleep(0.2)  # poll interval of a deadline-bound wait


def cli(worker: Worker, *args: str) -> str:
    done = worker.cli(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def routed_of(outcomes: TopicReader, event_id: str) -> dict:
    (routed,) = await outcomes.wait_for(kind("routed", event_id=event_id))
    return value(routed)


async def test_a_silenced_route_runs_nothing_until_it_is_expired(worker, reader_factory):
    outcomes = await reader_factory(worker.topic("outcomes"))
    sid = cli(
        worker, "silence", "add", "--route", "quiet", "--for", "1h",
        "--author", "ana", "--comment", "maintenance window",
    )  # fmt: skip
    assert sid.startswith("sil-")
    listed = [json.loads(line) for line in cli(worker, "silence", "list", "--json").splitlines()]
    assert [(s["id"], s["state"], s["route"]) for s in listed] == [(sid, "active", "quiet")]
    await_active(worker, 1)

    ids = [post_event(worker, {"test": "silence", "n": n}) for n in range(3)]
    held = await outcomes.wait_for(lambda m: kind("silenced")(m) and value(m)["event_id"] in ids, 3)
    for record in held:
        v = value(record)
        assert schema_errors("silenced", v) == []
        assert v["routes"] == [{"route": "quiet", "silences": [sid], "actions": ["works"]}]
        assert v["silences"][0]["author"] == "ana"
    for event_id in ids:
        routed = await routed_of(outcomes, event_id)
        assert routed["routes"] == ["quiet"] and routed["commands"] == []
        assert routed["silenced"] == [{"route": "quiet", "silences": [sid]}]

    assert cli(worker, "silence", "expire", sid, "--author", "bo") == f"expired {sid}"
    await_active(worker, 0)
    assert cli(worker, "silence", "list", "--json") == ""  # nothing holds now
    (ended,) = [
        json.loads(x) for x in cli(worker, "silence", "list", "--all", "--json").split("\n")
    ]
    assert ended["state"] == "expired" and ended["expired_by"] == "bo"
    again = post_event(worker, {"test": "silence", "n": "after"})
    (ran,) = await outcomes.wait_for(kind("outcome", event_id=again))
    assert value(ran)["status"] == "succeeded" and value(ran)["action"] == "works"
    assert (await routed_of(outcomes, again))["silenced"] == []
    # None of the silenced events ran, then or later.
    assert not [m for m in outcomes.seen if kind("outcome")(m) and value(m)["event_id"] in ids]


async def test_a_rule_silence_with_a_short_end_lets_events_run_once_it_ended(
    worker, reader_factory
):
    outcomes = await reader_factory(worker.topic("outcomes"))
    marker = uuid.uuid4().hex[:8]
    sid = cli(
        worker, "silence", "add", "--rule", f'input.marker == "{marker}"', "--for", "6s",
        "--author", "ana", "--comment", "short",
    )  # fmt: skip
    (listed,) = [json.loads(x) for x in cli(worker, "silence", "list", "--json").splitlines()]
    ends_at = datetime.fromisoformat(listed["end"].replace("Z", "+00:00"))
    await_active(worker, 1)
    first = post_event(worker, {"test": "silence", "marker": marker})
    (held,) = await outcomes.wait_for(kind("silenced", event_id=first))
    assert value(held)["routes"][0]["silences"] == [sid]
    other = post_event(worker, {"test": "silence", "marker": "someone-else"})
    await outcomes.wait_for(kind("outcome", event_id=other))  # the rule decides, not the route

    end = time.monotonic() + DEADLINE_S
    while True:  # post until one runs: the silence ends by time alone, no record comes
        event_id = post_event(worker, {"test": "silence", "marker": marker})
        routed = await routed_of(outcomes, event_id)
        if routed["commands"]:
            break
        assert time.monotonic() < end, "the silence never ended"
        time.sleep(0.25)  # poll interval while the silence runs out
    routed_at = datetime.fromisoformat(routed["at"].replace("Z", "+00:00"))
    assert routed_at >= ends_at.astimezone(UTC)
    (ran,) = await outcomes.wait_for(kind("outcome", event_id=event_id))
    assert value(ran)["status"] == "succeeded"


async def test_chain_steps_run_on_success_or_failure_and_say_why_they_did_not(
    worker, reader_factory
):
    outcomes = await reader_factory(worker.topic("outcomes"))
    event_id = post_event(worker, {"test": "chain"})
    found = await outcomes.wait_for(kind("outcome", event_id=event_id), count=7)
    runs = {(value(m)["route"], value(m)["action"]): value(m) for m in found}
    assert all(schema_errors("outcome", v) == [] for v in runs.values())
    status = {k: v["status"] for k, v in runs.items()}
    assert status == {
        ("chain-fail", "fails"): "failed",
        ("chain-fail", "scale"): "skipped",
        ("chain-fail", "page"): "succeeded",
        ("chain-fail", "works"): "succeeded",
        ("chain-ok", "works"): "succeeded",
        ("chain-ok", "scale"): "succeeded",
        ("chain-ok", "page"): "skipped",
    }
    assert runs[("chain-fail", "scale")]["detail"]["reason"] == (
        "previous step (action 'fails') failed; this step runs on success"
    )
    assert runs[("chain-ok", "page")]["detail"]["reason"] == (
        "previous step (action 'scale') succeeded; this step runs on failure"
    )
    # Order: a skipped step's outcome comes after the step that decided it.
    order = [(value(m)["route"], value(m)["action"]) for m in found]
    assert order.index(("chain-fail", "fails")) < order.index(("chain-fail", "scale"))
    assert order.index(("chain-ok", "scale")) < order.index(("chain-ok", "page"))
