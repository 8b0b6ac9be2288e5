"""Deduplication and aggregation on the real broker, across restarts and two workers."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from streams import records
from streams.records import schema_errors
from tests.kafka_support import DEADLINE_S, Worker, start_worker, unique_prefix, value

pytestmark = pytest.mark.kafka

ACTIONS = """
actions:
  - {name: first, type: exec, enable: true, exec-script: echo "$POSTEE_EVENT_ID"}
  - {name: second, type: exec, enable: true, exec-script: echo "$POSTEE_EVENT_ID"}
"""


def write(directory: Path, routes: str) -> Path:
    path = directory / f"cfg-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(textwrap.dedent(routes) + ACTIONS)
    return path


def post(worker: Worker, event: dict) -> str:
    response = httpx.post(worker.base_url + "/", json=event, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def kind(name: str, **fields):
    return lambda m: (
        (v := value(m))["kind"] == name and all(v.get(k) == x for k, x in fields.items())
    )


FLOOD = """
routes:
  - name: flood
    input: input.kind == "VulnerabilityReport"
    actions: [first, second]
    plugins:
      unique-message-props: [metadata.name, report.artifact.tag]
      unique-message-timeout: 3s
  - name: forever
    input: input.test == "forever"
    actions: [first]
    plugins:
      unique-message-props: [marker]
"""


async def test_trivy_operator_flood_runs_once_then_again_after_the_ttl(
    bootstrap, log_dir, module_tmp, reader_factory, samples
):
    report = json.loads((samples / "upstream" / "trivy-operator-input.json").read_text())
    report["metadata"]["name"] = f"flood-{uuid.uuid4().hex[:6]}"
    worker = start_worker(bootstrap, write(module_tmp, FLOOD), log_dir, "flood")
    try:
        first_posted = time.monotonic()
        # One arrival time for the whole flood (the dedupe TTL is checked at event time):
        # how long 20 POSTs take on a loaded machine must not decide the test.
        ids = await flood(bootstrap, worker.topic("events"), report, 20)
        outcomes = await reader_factory(worker.topic("outcomes"))
        decisions = [value(m) for m in await outcomes.wait_for(kind("deduplicated"), count=20)]
        assert all(schema_errors("plugin-decision", d) == [] for d in decisions)
        passed = [d for d in decisions if d["decision"] == "passed"]
        dropped = [d for d in decisions if d["decision"] == "dropped"]
        assert [d["event_id"] for d in passed] == [ids[0]] and len(dropped) == 19
        assert {d["first_event_id"] for d in dropped} == {ids[0]} and all(
            d["first_seen"] for d in dropped
        )
        ran = await outcomes.wait_for(kind("outcome"), count=2)
        assert sorted(value(m)["action"] for m in ran) == ["first", "second"]  # both actions, once
        assert {value(m)["event_id"] for m in ran} == {ids[0]}
        routed = await outcomes.wait_for(kind("routed"), count=20)
        assert {c["deferred"] for m in routed for c in value(m)["commands"]} == {"dedupe"}

        # After the TTL the same report passes again: poll until it does, within a deadline.
        end = time.monotonic() + DEADLINE_S
        while True:
            again = post(worker, report)
            (decision,) = await outcomes.wait_for(kind("deduplicated", event_id=again))
            if value(decision)["decision"] == "passed":
                break
            assert time.monotonic() < end, "the duplicate never passed after its TTL"
            await asyncio.sleep(0.25)  # poll interval while the TTL runs out
        assert time.monotonic() - first_posted >= 3.0  # not before the 3 s TTL ran out
        assert len(await outcomes.wait_for(kind("outcome"), count=4)) == 4
    finally:
        worker.stop()


async def flood(bootstrap: str, topic: str, event: dict, count: int) -> list[str]:
    """`count` copies of one event with one `postee-received-at`, in order on one
    partition (so the router sees them in that order too)."""
    at = records.utc_now()
    ids = [records.new_event_id() for _ in range(count)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for event_id in ids:
            await producer.send_and_wait(
                topic,
                json.dumps(event).encode(),
                key=event_id.encode(),
                partition=0,
                headers=records.event_headers(event_id, "http", at),
            )
    finally:
        await producer.stop()
    return ids


async def test_dedupe_state_survives_a_restart(bootstrap, log_dir, module_tmp, reader_factory):
    config = write(module_tmp, FLOOD)
    prefix = unique_prefix("restart")
    marker = uuid.uuid4().hex
    worker = start_worker(bootstrap, config, log_dir, "restart", prefix=prefix)
    try:
        first = post(worker, {"test": "forever", "marker": marker})
        outcomes = await reader_factory(worker.topic("outcomes"))
        await outcomes.wait_for(kind("deduplicated", event_id=first, decision="passed"))
    finally:
        assert worker.stop() == 0
    worker = start_worker(bootstrap, config, log_dir, "restart", prefix=prefix)
    try:
        second = post(worker, {"test": "forever", "marker": marker})
        (dropped,) = await outcomes.wait_for(kind("deduplicated", event_id=second))
        assert value(dropped)["decision"] == "dropped" and value(dropped)["first_event_id"] == first
        fresh = post(worker, {"test": "forever", "marker": uuid.uuid4().hex})
        await outcomes.wait_for(kind("deduplicated", event_id=fresh, decision="passed"))
    finally:
        worker.stop()


KEYED = """
routes:
  - name: keyed
    input: input.test == "keyed"
    actions: [first, second]
    plugins:
      unique-message-props: [key]
"""


async def test_two_workers_in_one_group_issue_exactly_one_command_per_key_and_action(
    bootstrap, log_dir, module_tmp, reader_factory
):
    config = write(module_tmp, KEYED)
    prefix = unique_prefix("pair")
    workers = [start_worker(bootstrap, config, log_dir, "pair", prefix=prefix) for _ in range(2)]
    try:
        batch = uuid.uuid4().hex[:6]
        for i in range(200):
            post(workers[i % 2], {"test": "keyed", "key": f"{batch}-{i % 20}", "i": i})
        outcomes = await reader_factory(workers[0].topic("outcomes"))
        await outcomes.wait_for(kind("deduplicated"), count=200)
        await outcomes.wait_for(kind("outcome"), count=40)
        commands = await reader_factory(workers[0].topic("actions.exec"))
        issued = await commands.wait_for(lambda m: value(m)["route"] == "keyed", count=40)
        per_action = {
            a: [value(m) for m in issued if value(m)["action"] == a] for a in ("first", "second")
        }
        assert {a: len(c) for a, c in per_action.items()} == {"first": 20, "second": 20}
        # Nothing more arrives: a marker event's outcome comes after all of them.
        marker = post(workers[0], {"test": "keyed", "key": f"{batch}-marker"})
        await outcomes.wait_for(kind("outcome", event_id=marker), count=2)
        await commands.wait_for(lambda m: value(m)["event_id"] == marker, count=2)
        assert len([m for m in commands.seen if value(m)["route"] == "keyed"]) == 42
    finally:
        for worker in workers:
            worker.stop()


AGGREGATE = """
routes:
  - name: by-number
    input: input.test == "number"
    actions: [first]
    plugins:
      aggregate-message-number: 10
      aggregate-message-timeout: 4s
  - name: by-time
    input: input.test == "time"
    actions: [first, second]
    plugins:
      aggregate-message-timeout: 2s
  - name: by-number-only
    input: input.test == "restart"
    actions: [first]
    plugins:
      aggregate-message-number: 10
  - name: digest
    input: input.SigMetadata.ID == "TRC-12"
    template: tracee
    actions: [second]
    plugins:
      aggregate-message-number: 2
templates:
  - name: tracee
    rego-package: postee.tracee
"""


def batches(commands, route: str) -> list[dict]:
    return [
        value(m)
        for m in commands.seen
        if value(m)["route"] == route and value(m)["batch_event_ids"]
    ]


async def test_aggregation_by_number_and_by_time(bootstrap, log_dir, module_tmp, reader_factory):
    worker = start_worker(bootstrap, write(module_tmp, AGGREGATE), log_dir, "aggregate")
    try:
        numbered = [post(worker, {"test": "number", "i": i}) for i in range(25)]
        timed = [post(worker, {"test": "time", "i": i}) for i in range(3)]
        commands = await reader_factory(worker.topic("actions.exec"))
        await commands.wait_for(lambda m: value(m)["route"] == "by-number", count=3)
        sizes = sorted(len(b["batch_event_ids"]) for b in batches(commands, "by-number"))
        assert sizes == [5, 10, 10]  # two full batches, then the remainder at the timeout
        assert sorted(
            i for b in batches(commands, "by-number") for i in b["batch_event_ids"]
        ) == sorted(numbered)
        await commands.wait_for(lambda m: value(m)["route"] == "by-time", count=2)
        by_time = batches(commands, "by-time")
        assert sorted(b["action"] for b in by_time) == ["first", "second"]  # one batch per action
        assert all(sorted(b["batch_event_ids"]) == sorted(timed) for b in by_time)
        for b in by_time:
            assert schema_errors("command", b) == []
        outcomes = await reader_factory(worker.topic("outcomes"))
        joined = await outcomes.wait_for(kind("aggregated", route="by-time"), count=6)
        assert {value(m)["batch_id"] for m in joined} == {
            b["event_id"].removeprefix("batch:") for b in by_time
        }
        done = await outcomes.wait_for(kind("outcome", route="by-time"), count=2)
        assert {value(m)["event_id"] for m in done} == {b["event_id"] for b in by_time}
        assert {value(m)["detail"]["stdout"].strip() for m in done} == {
            b["event_id"] for b in by_time
        }
        description = json.loads(by_time[0]["template"]["description"])
        assert sorted(json.loads(text)["i"] for text in description) == [0, 1, 2]
    finally:
        worker.stop()


async def test_aggregation_survives_a_restart(bootstrap, log_dir, module_tmp, reader_factory):
    config = write(module_tmp, AGGREGATE)
    prefix = unique_prefix("aggrestart")
    worker = start_worker(bootstrap, config, log_dir, "aggrestart", prefix=prefix)
    try:
        before = [post(worker, {"test": "restart", "i": i}) for i in range(5)]
        outcomes = await reader_factory(worker.topic("outcomes"))
        await outcomes.wait_for(kind("aggregated", route="by-number-only"), count=5)
    finally:
        assert worker.stop() == 0
    worker = start_worker(bootstrap, config, log_dir, "aggrestart", prefix=prefix)
    try:
        after = [post(worker, {"test": "restart", "i": i}) for i in range(5, 10)]
        commands = await reader_factory(worker.topic("actions.exec"))
        (batch,) = await commands.wait_for(lambda m: value(m)["route"] == "by-number-only")
        # Order inside a batch follows arrival at the plugin partition, not posting order.
        assert sorted(value(batch)["batch_event_ids"]) == sorted(before + after)
    finally:
        worker.stop()


async def test_aggregation_template_renders_the_batch(
    bootstrap, log_dir, module_tmp, reader_factory, samples
):
    worker = start_worker(bootstrap, write(module_tmp, AGGREGATE), log_dir, "digest")
    try:
        event = json.loads((samples / "tracee" / "trc-12-illegitimate-shell.json").read_text())
        ids = [post(worker, {**event, "n": n}) for n in range(2)]
        commands = await reader_factory(worker.topic("actions.exec"))
        (batch,) = await commands.wait_for(lambda m: value(m)["route"] == "digest")
        batch = value(batch)
        assert sorted(batch["batch_event_ids"]) == sorted(ids)
        assert batch["template"]["title"] == "2 Tracee detections"  # postee.tracee.digest
        outcomes = await reader_factory(worker.topic("outcomes"))
        (done,) = await outcomes.wait_for(kind("outcome", event_id=batch["event_id"]))
        assert value(done)["status"] == "succeeded"
        assert batch["template"]["description"].count("Tracee TRC-12") == 2
    finally:
        worker.stop()
