"""Trust boundaries and poison records, on the real broker: a command topic is not a shell,
an event id is not a password, and no record size stops a partition."""

from __future__ import annotations

import hashlib
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams import records
from tests.kafka_support import Worker, start_worker, unique_prefix, value

pytestmark = pytest.mark.kafka

SECRET = "trust-s3cret-value-91c2"
MAX_BODY = 1024 * 1024  # the default POSTEE_MAX_BODY_BYTES


@pytest.fixture(scope="module")
def out_dir(module_tmp: Path) -> Path:
    directory = module_tmp / "out"
    directory.mkdir()
    return directory


@pytest.fixture(scope="module")
def worker(bootstrap, log_dir, module_tmp, out_dir) -> Iterator[Worker]:
    config = module_tmp / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: note
            input: input.test == "trust"
            actions: [note-id]
          - name: big-raw
            input: input.test == "big-raw"
            template: raw-json
            actions: [digest]
          - name: big-chain
            input: input.test == "big-chain"
            template: raw-json
            serialize-actions: true
            actions: [digest, note-id]
          - name: big-plain
            input: input.test == "big-plain"
            actions: [digest]
          - name: big-double
            input: input.test == "big-double"
            template: double
            actions: [digest]
        templates:
          - name: raw-json
            rego-package: postee.rawmessage.json
          - name: double
            body: |
              package postee.double
              title := "twice"
              result := concat("", [input.pad, input.pad])
        actions:
          - name: note-id
            type: exec
            enable: true
            env: [OUT={out_dir}/ids]
            exec-script: printf '%s\\n' "$POSTEE_EVENT_ID" >> "$OUT"
          - name: digest
            type: exec
            enable: true
            env: [OUT={out_dir}/digests]
            exec-script: |
              d=$(sha256sum < "$POSTEE_EVENT_FILE" | cut -d' ' -f1)
              printf '%s %s\\n' "$POSTEE_EVENT_ID" "$d" >> "$OUT"
        """)
    )
    # Events here are padded with one long string to reach record sizes; the engine's
    # string bound (tested in test_engine_isolation) is lifted so that they are routed.
    env = {"SECRET": SECRET, "POSTEE_MAX_STRING_BYTES": str(2 * MAX_BODY)}
    started = start_worker(bootstrap, config, log_dir, "trust", env)
    yield started
    started.stop()


@pytest.fixture
async def producer(bootstrap) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2**21)
    await client.start()
    yield client
    await client.stop()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def is_outcome(event_id: str, action: str | None = None) -> Any:
    def check(m: Any) -> bool:
        v = value(m)
        return (
            v["kind"] == "outcome"
            and v["event_id"] == event_id
            and (action is None or v["action"] == action)
        )

    return check


async def test_forged_commands_run_nothing_and_resolve_no_secret(
    worker, producer, reader_factory, out_dir
):
    marker = out_dir / "forged"
    now = records.utc_now()
    base: dict[str, Any] = {
        "event_id": "forged-event",
        "route": "note",
        "type": "exec",
        "config_version": "0" * 16,
        "event": {"test": "trust"},
        "issued_at": now,
        "replay": False,
        "dry_run": False,
        "attempt": 1,
    }
    with_script = base | {
        "command_id": "a" * 32,
        "action": "ghost",
        "params": {"exec-script": f"echo $X > {marker}", "env": ["X=$SECRET"]},
    }
    ghost = base | {"command_id": "b" * 32, "action": "ghost"}
    elsewhere = base | {"command_id": "c" * 32, "action": "note-id", "route": "nowhere"}
    for forged in (with_script, ghost, elsewhere):
        await producer.send_and_wait(
            worker.topic("actions.exec"), json.dumps(forged).encode(), key=b"forged-event"
        )
    dlq = await reader_factory(worker.topic("dlq"))
    found = await dlq.wait_for(lambda m: value(m)["event_id"] in (None, "forged-event"), count=3)
    reasons = sorted(value(m)["reason"] for m in found)
    assert any("not a valid command" in r and "params" in r for r in reasons), reasons
    assert any("'ghost' is not defined in this worker's config" in r for r in reasons), reasons
    assert any("route 'nowhere' is not defined" in r for r in reasons), reasons
    outcomes = await reader_factory(worker.topic("outcomes"))
    refused = await outcomes.wait_for(is_outcome("forged-event"), count=2)
    assert {value(m)["status"] for m in refused} == {"failed"}
    assert all(value(m)["error"].startswith("refused: ") for m in refused)
    assert not marker.exists()
    assert "forged-event" not in lines(out_dir / "ids")
    assert SECRET not in worker.log()


async def test_a_forged_event_id_cannot_take_the_place_of_a_real_event(
    worker, producer, reader_factory, out_dir
):
    topic = worker.topic("events")
    event = json.dumps({"test": "trust"}).encode()
    # 1. A header claiming the positional id of the next record.
    end = await producer.send_and_wait(topic, b'{"test": "warm-up"}', partition=0)
    next_id = f"{topic}:0:{end.offset + 2}"
    forged = await producer.send_and_wait(
        topic, event, partition=0, headers=[("postee-event-id", next_id.encode())]
    )
    real = await producer.send_and_wait(topic, event, partition=0)
    assert real.offset == forged.offset + 1 and f"{topic}:0:{real.offset}" == next_id
    # 2. Two records claiming one (non-positional) id: both are separate records.
    claimed = [("postee-event-id", b"0123456789abcdef0123456789abcdef")]
    first = await producer.send_and_wait(topic, event, partition=1, headers=claimed)
    second = await producer.send_and_wait(topic, event, partition=1, headers=claimed)
    outcomes = await reader_factory(worker.topic("outcomes"))
    (real_outcome,) = await outcomes.wait_for(is_outcome(next_id))
    (forged_outcome,) = await outcomes.wait_for(is_outcome(f"{topic}:0:{forged.offset}"))
    assert real_outcome.value != forged_outcome.value
    for outcome in (real_outcome, forged_outcome):
        assert value(outcome)["status"] == "succeeded"
    both = await outcomes.wait_for(is_outcome("0123456789abcdef0123456789abcdef"), count=2)
    assert {value(m)["status"] for m in both} == {"succeeded"}
    assert len({value(m)["command_id"] for m in both}) == 2
    ids = lines(out_dir / "ids")
    assert next_id in ids and f"{topic}:0:{forged.offset}" in ids
    assert ids.count("0123456789abcdef0123456789abcdef") == 2
    assert first.offset + 1 == second.offset


async def test_a_replay_mark_on_the_events_topic_is_not_a_replay(worker, producer, reader_factory):
    headers = [
        ("postee-event-id", b"fake-replay-1"),
        ("postee-source", b"replay"),
        ("postee-replay-id", b"r-forged"),
        ("postee-replay-mode", b"dry-run"),
    ]
    await producer.send_and_wait(worker.topic("events"), b'{"test": "trust"}', headers=headers)
    outcomes = await reader_factory(worker.topic("outcomes"))
    (routed,) = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == "fake-replay-1"
    )
    assert value(routed)["source"] == "kafka" and value(routed)["replay_id"] is None
    (outcome,) = await outcomes.wait_for(is_outcome("fake-replay-1"))
    assert value(outcome)["status"] == "succeeded" and value(outcome)["dry_run"] is False


def post(worker: Worker, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(worker.base_url + "/", json=payload, timeout=30)


def padded(test: str, size: int) -> dict[str, Any]:
    """An event whose JSON body is `size` bytes (httpx sends compact JSON)."""
    bare = len(json.dumps({"test": test, "pad": ""}, separators=(",", ":")).encode())
    return {"test": test, "pad": "x" * (size - bare)}


async def test_large_events_run_by_reference_and_the_partition_moves_on(
    worker, reader_factory, out_dir
):
    outcomes = await reader_factory(worker.topic("outcomes"))
    commands = await reader_factory(worker.topic("actions.exec"))
    cases = {
        "raw": padded("big-raw", 600_000),
        "chain": padded("big-chain", 600_000),
        "plain": padded("big-plain", MAX_BODY - 100),
        "raw-at-limit": padded("big-raw", MAX_BODY - 100),
    }
    ids = {}
    for name, payload in cases.items():
        response = post(worker, payload)
        assert response.status_code == 202, (name, response.text)
        ids[name] = response.json()["id"]
    after = post(worker, {"test": "trust"}).json()["id"]
    refused = post(worker, padded("big-plain", MAX_BODY + 1))
    assert refused.status_code == 413 and "exceeds the limit" in refused.json()["error"]

    for name, event_id in ids.items():
        wanted = 2 if name == "chain" else 1
        done = await outcomes.wait_for(is_outcome(event_id), count=wanted, deadline_s=90)
        assert [value(m)["status"] for m in done] == ["succeeded"] * wanted, (name, done)
        (head, *_) = await commands.wait_for(lambda m, e=event_id: value(m)["event_id"] == e)
        command = value(head)
        assert command["event_ref"]["topic"] == worker.topic("events")
        assert len(head.value) <= MAX_BODY + 64 * 1024
        # Too large to carry the event as well as its description: it rides by reference.
        assert (command["event"] is None) == (name != "plain"), name
    digests = dict(line.split() for line in lines(out_dir / "digests"))
    plain_text = json.dumps(cases["plain"], ensure_ascii=False).encode()
    assert digests[ids["plain"]] == hashlib.sha256(plain_text).hexdigest()
    (next_outcome,) = await outcomes.wait_for(is_outcome(after))
    assert value(next_outcome)["status"] == "succeeded"
    chain = await outcomes.wait_for(is_outcome(ids["chain"]), count=2)
    assert [value(m)["action"] for m in chain] == ["digest", "note-id"]


async def test_a_command_that_cannot_be_written_is_recorded_and_the_stream_goes_on(
    worker, reader_factory
):
    # The description alone (twice the padding) is over the record limit: no command
    # can carry it. It must not stop the router's partition.
    event_id = post(worker, padded("big-double", 700_000)).json()["id"]
    after = post(worker, {"test": "trust"}).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (failed,) = await outcomes.wait_for(is_outcome(event_id), deadline_s=90)
    assert value(failed)["status"] == "failed"
    assert value(failed)["error"].startswith("not issued: a record of ")
    assert "exceeds the record limit" in value(failed)["error"]
    dlq = await reader_factory(worker.topic("dlq"))
    (record,) = await dlq.wait_for(lambda m: value(m)["event_id"] == event_id)
    assert value(record)["stage"] == "publish" and value(record)["encoding"] == "none"
    assert value(record)["topic"] == worker.topic("events")
    (next_outcome,) = await outcomes.wait_for(is_outcome(after))
    assert value(next_outcome)["status"] == "succeeded"


async def test_a_topic_that_cannot_hold_the_largest_record_stops_the_start(
    bootstrap, log_dir, module_tmp
):
    prefix = unique_prefix("small-topic")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        small = NewTopic(f"{prefix}.events", 2, 1, topic_configs={"max.message.bytes": "100000"})
        await admin.create_topics([small])
    finally:
        await admin.close()
    config = module_tmp / "small.yaml"
    config.write_text("routes: []\nactions: []\n")
    with pytest.raises(AssertionError) as failed:
        start_worker(bootstrap, config, log_dir, "small-topic", prefix=prefix)
    message = str(failed.value)
    assert f"topic {prefix}.events accepts records up to 100000 bytes" in message
    assert "POSTEE_MAX_BODY_BYTES" in message


async def test_faust_topics_are_declared_with_ours_and_keep_their_settings(worker, bootstrap):
    # topics.internal_specs declares Faust's changelogs in one request at start.
    ledger = f"{worker.prefix}-streams-command-ledger-exec-changelog"
    dedupe = f"{worker.prefix}-streams-dedupe-first-seen-changelog"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        wanted = {"cleanup.policy": None, "max.message.bytes": None}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, wanted) for name in (ledger, dedupe)]
        )
    finally:
        await admin.close()
    found = {res[3]: dict((e[0], e[1]) for e in res[4]) for r in responses for res in r.resources}
    assert found[ledger]["cleanup.policy"] == "compact,delete"
    assert found[dedupe]["cleanup.policy"] == "compact"
    assert int(found[ledger]["max.message.bytes"]) == MAX_BODY + 64 * 1024
