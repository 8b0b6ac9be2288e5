"""The http action through the broker: retries, final failures, DLQ, and the seed's
exec-then-http forensic scenario, against a real server on 127.0.0.1."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from streams.records import schema_errors
from tests.http_sink import Sink, http_sink
from tests.kafka_support import REPO, Worker, outcomes_of, post_event, start_worker, value

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


def flaky_config(directory: Path, base_url: str) -> Path:
    config = directory / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: ship
            input: input.test == "ship"
            actions: [post-it]
        actions:
          - name: post-it
            type: http
            enable: true
            url: {base_url}/event.input.path
            retries: 2
            retry-backoff: 0.05
            timeout: 2s
            body-content: 'id=event.input.id'
    """)
    )
    return config


@pytest.fixture(scope="module")
async def worker(bootstrap, module_tmp, log_dir, sink) -> AsyncIterator[Worker]:
    handle = start_worker(bootstrap, flaky_config(module_tmp, sink.base_url), log_dir, "http")
    yield handle
    handle.stop()


async def test_503_then_200_records_two_attempts(worker, sink, reader_factory):
    path = f"flaky-{uuid.uuid4().hex[:6]}"
    sink.script["/" + path] = [503]
    event_id = post_event(worker, {"test": "ship", "path": path, "id": 7})
    outcomes = await reader_factory(worker.topic("outcomes"))
    first, second = (value(m) for m in await outcomes.wait_for(outcomes_of(event_id), count=2))
    for record in (first, second):
        assert schema_errors("outcome", record) == []
    assert (first["attempt"], first["status"], first["final"]) == (1, "failed", False)
    assert first["detail"]["status_code"] == 503 and "503" in first["error"]
    assert (second["attempt"], second["status"], second["final"]) == (2, "succeeded", True)
    assert first["command_id"] == second["command_id"]
    seen = sink.on("/" + path)
    assert len(seen) == 2 and {s.headers["Idempotency-Key"] for s in seen} == {first["command_id"]}
    assert seen[1].body == b"id=7"


async def test_400_fails_once_without_retry(worker, sink, reader_factory):
    path = f"reject-{uuid.uuid4().hex[:6]}"
    sink.script["/" + path] = [400]
    event_id = post_event(worker, {"test": "ship", "path": path})
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(outcomes_of(event_id))
    assert value(outcome)["status"] == "failed" and value(outcome)["final"] is True
    assert value(outcome)["detail"]["status_code"] == 400
    # A later event's outcome proves no second attempt of the first was coming.
    later = post_event(worker, {"test": "ship", "path": "fine"})
    await outcomes.wait_for(outcomes_of(later))
    assert len(sink.on("/" + path)) == 1
    assert len([m for m in outcomes.seen if outcomes_of(event_id)(m)]) == 1


async def test_exhausted_retries_go_to_the_dlq_with_every_error(worker, sink, reader_factory):
    path = f"down-{uuid.uuid4().hex[:6]}"
    sink.script["/" + path] = [500, 502, 503]
    event_id = post_event(worker, {"test": "ship", "path": path})
    outcomes = await reader_factory(worker.topic("outcomes"))
    attempts = [value(m) for m in await outcomes.wait_for(outcomes_of(event_id), count=3)]
    assert [(a["attempt"], a["status"], a["final"]) for a in attempts] == [
        (1, "failed", False),
        (2, "failed", False),
        (3, "failed", True),
    ]
    dlq = await reader_factory(worker.topic("dlq"))
    (record,) = await dlq.wait_for(lambda m: value(m)["event_id"] == event_id)
    record = value(record)
    assert schema_errors("dlq", record) == []
    assert record["stage"] == "execute" and "attempts exhausted" in record["reason"]
    assert [a["error"] for a in record["attempts"]] == [
        "HTTP 500 Internal Server Error",
        "HTTP 502 Bad Gateway",
        "HTTP 503 Service Unavailable",
    ]
    assert json.loads(record["original"])["command_id"] == attempts[0]["command_id"]


async def test_seed_scenario_exec_saves_then_http_ships_the_log(
    bootstrap, log_dir, sink, module_tmp, reader_factory, samples
):
    config = yaml.safe_load((REPO / "examples" / "cfg-http-forensics.yaml").read_text())
    log = module_tmp / "forensics" / "tracee-events.log"
    save, ship = config["actions"]
    save["env"] = [f"FORENSIC_LOG={log}"]
    ship["url"] = ship["url"].replace("http://127.0.0.1:8000", sink.base_url)
    ship["body-file"] = str(log)
    path = module_tmp / "seed.yaml"
    path.write_text(yaml.safe_dump(config))
    worker = start_worker(bootstrap, path, log_dir, "seed")
    try:
        event = json.loads((samples / "tracee" / "trc-2-anti-debugging.json").read_text())
        event_id = post_event(worker, event)
        outcomes = await reader_factory(worker.topic("outcomes"))
        saved, shipped = (value(m) for m in await outcomes.wait_for(outcomes_of(event_id), count=2))
        assert (saved["action"], saved["status"]) == ("save-forensic-log", "succeeded")
        assert (shipped["action"], shipped["status"]) == ("ship-forensic-log", "succeeded")
        assert shipped["started_at"] >= saved["finished_at"]  # in order, as serialized
        (upload,) = sink.on(f"/forensics/{event['Context']['hostName']}")
        assert event in [json.loads(line) for line in upload.body.decode().splitlines()]
        assert upload.headers["X-Tracee-Signature"] == "TRC-2"
        assert upload.headers["Content-Type"] == "application/x-ndjson"
    finally:
        worker.stop()
