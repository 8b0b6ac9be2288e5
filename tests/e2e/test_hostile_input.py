"""Hostile input against the running service: every body gets a 4xx or is accepted as a
valid event, every record produced straight to the topic is routed or dead-lettered with
a reason, the worker never dies, and the next valid event is processed."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import records
from streams.errors import EventError
from streams.evaluator import input_refusal
from streams.settings import EngineSettings
from tests.hostile import hostile_bodies
from tests.kafka_support import Worker, start_worker, value

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def worker(bootstrap: str, module_tmp: Path, log_dir: Path) -> Iterator[Worker]:
    config = module_tmp / "cfg.yaml"
    config.write_text(
        textwrap.dedent("""
        routes:
          - name: anything
            input: input.a == 1
            template: tracee
            actions: [noop]
          - name: marker
            input: input.marker == true
            actions: [noop]
        templates:
          - name: tracee
            rego-package: postee.tracee
        actions:
          - {name: noop, type: exec, enable: true, exec-script: "true"}
    """)
    )
    handle = start_worker(bootstrap, config, log_dir, "hostile")
    yield handle
    handle.stop()


MAX_BODY_BYTES = 1024 * 1024


def expected_status(body: bytes) -> set[int]:
    if len(body) > MAX_BODY_BYTES:
        return {413}
    try:
        payload = records.parse_json_object(body)
    except EventError:
        return {400}
    bounds = EngineSettings()  # the worker runs with the defaults
    if input_refusal(payload, bounds.max_input_values, bounds.max_string_bytes) is not None:
        return {400}  # the bridge refuses what the rule engine would
    return {202}


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(body=hostile_bodies)
def test_the_bridge_answers_every_body(worker, body):
    try:
        response = httpx.post(worker.base_url + "/", content=bytes(body), timeout=30)
    except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
        # Over the limit, the bridge answers 413 from Content-Length and closes without
        # reading the body; a client still writing may see the close before the answer.
        assert len(body) > MAX_BODY_BYTES
        assert worker.process.poll() is None
        return
    assert response.status_code in expected_status(body), response.text
    if response.status_code != 202:
        assert response.json()["error"]
    assert worker.process.poll() is None


async def test_after_the_storm_a_valid_event_still_runs(worker, reader_factory):
    event_id = httpx.post(worker.base_url + "/", json={"marker": True}, timeout=10).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id
    )
    assert value(outcome)["status"] == "succeeded"


@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(bodies=st.lists(hostile_bodies.filter(lambda b: len(b) < 900_000), min_size=20, max_size=40))
def test_direct_produce_is_routed_or_dead_lettered(worker, bootstrap, bodies):
    asyncio.run(_produce_and_check(worker, bootstrap, bodies))


async def _produce_and_check(worker: Worker, bootstrap: str, bodies: list[bytes]) -> None:
    from tests.kafka_support import open_reader

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        placed = [await producer.send_and_wait(worker.topic("events"), body) for body in bodies]
        marker = await producer.send_and_wait(
            worker.topic("events"), json.dumps({"marker": True}).encode()
        )
    finally:
        await producer.stop()
    ids = {f"{m.topic}:{m.partition}:{m.offset}" for m in placed}
    marker_id = f"{marker.topic}:{marker.partition}:{marker.offset}"
    outcomes, dlq = (
        await open_reader(bootstrap, worker.topic("outcomes")),
        await open_reader(bootstrap, worker.topic("dlq")),
    )
    try:
        await outcomes.wait_for(
            lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == marker_id
        )
        routed = {value(m)["event_id"] for m in outcomes.seen if value(m)["kind"] == "routed"}
        expected_dlq = ids - routed
        found = await dlq.wait_for(
            lambda m: (
                f"{value(m)['topic']}:{value(m)['partition']}:{value(m)['offset']}" in expected_dlq
            ),
            count=len(expected_dlq),
        )
        for record in found:
            assert value(record)["stage"] == "decode" and value(record)["reason"]
        assert ids <= routed | {
            f"{value(m)['topic']}:{value(m)['partition']}:{value(m)['offset']}" for m in found
        }
    finally:
        await outcomes.consumer.stop()
        await dlq.consumer.stop()
