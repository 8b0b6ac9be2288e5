"""Running it in production: /metrics counts exactly what happened, JSON logs, probes.

One worker (JSON logs) gets a known mix of events; its /metrics is parsed with the
Prometheus text parser. The probe test runs a second worker on a private broker that it
starts and stops itself (scripts/kafka with its own ports and state folder).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kafka_support import (
    DEADLINE_S,
    REPO,
    Worker,
    free_port,
    produce,
    start_worker,
    start_worker_without_ingest,
    value,
)
from tests.metrics_support import by_label, scrape

# Workers start slowly on a loaded machine (about 20 topics and changelogs to create).
pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]


def write_config(directory: Path, closed_port: int) -> Path:
    config = directory / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: ok
            input: input.test == "ok"
            actions: [succeed]
          - name: fails
            input: input.test == "fail"
            actions: [exit-three]
          - name: unreachable
            input: input.test == "unreachable"
            actions: [post-nowhere]
          - name: once
            input: input.test == "dup"
            actions: [succeed]
            plugins:
              unique-message-props: [key]
              unique-message-timeout: 1h
        actions:
          - name: succeed
            type: exec
            enable: true
            exec-script: "true"
          - name: exit-three
            type: exec
            enable: true
            exec-script: exit 3
          - name: post-nowhere
            type: http
            enable: true
            url: http://127.0.0.1:{closed_port}/
            timeout: 2s
            retries: 1
            retry-backoff: 0.01
        """)
    )
    return config


@pytest.fixture(scope="module")
def worker(bootstrap: str, module_tmp: Path, log_dir: Path) -> Iterator[Worker]:
    config = write_config(module_tmp, free_port())
    handle = start_worker(
        bootstrap, config, log_dir, "ops", {"POSTEE_LOG_FORMAT": "json"}, startup_deadline_s=90
    )
    yield handle
    handle.stop()


def post(worker: Worker, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(worker.base_url + "/", content=content, timeout=10)


async def test_metrics_count_a_known_mix_exactly(worker, reader_factory, bootstrap):
    ids = {}
    for name, body in [
        ("ok", {"test": "ok"}),
        ("none", {"test": "none"}),
        ("fail", {"test": "fail"}),
        ("unreachable", {"test": "unreachable"}),
        ("dup1", {"test": "dup", "key": "k"}),
        ("dup2", {"test": "dup", "key": "k"}),
    ]:
        response = post(worker, body)
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    assert post(worker, b"[1, 2]").status_code == 400
    await produce(bootstrap, worker.topic("events"), b"not json")

    outcomes = await reader_factory(worker.topic("outcomes"))
    for name in ("ok", "fail", "unreachable"):
        await outcomes.wait_for(
            lambda m, i=ids[name]: (
                value(m)["kind"] == "outcome" and value(m)["event_id"] == i and value(m)["final"]
            )
        )
    # The two duplicates have their own ids, so they may sit on different partitions of
    # the events topic and be routed in either order: whichever comes first runs.
    dups = {ids["dup1"], ids["dup2"]}
    (ran,) = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] in dups
    )
    (dropped,) = await outcomes.wait_for(
        lambda m: (
            value(m)["kind"] == "deduplicated"
            and value(m)["event_id"] in dups
            and value(m)["decision"] == "dropped"
        )
    )
    assert {value(ran)["event_id"], value(dropped)["event_id"]} == dups
    await outcomes.wait_for(
        lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == ids["none"]
    )
    dlq = await reader_factory(worker.topic("dlq"))
    await dlq.wait_for(lambda m: True, count=2)

    samples = scrape(worker.base_url)
    assert by_label(samples, "postee_events_received_total", "source") == {"http": 6}
    assert by_label(samples, "postee_events_routed_total", "result") == {
        "matched": 5,
        "unmatched": 1,
    }
    assert by_label(samples, "postee_commands_issued_total", "type") == {"exec": 3, "http": 1}
    outcome_counts = {
        (dict(labels)["type"], dict(labels)["status"]): v
        for (n, labels), v in samples.items()
        if n == "postee_outcomes_total"
    }
    assert outcome_counts == {
        ("exec", "succeeded"): 2,
        ("exec", "failed"): 1,
        ("http", "failed"): 2,
    }
    assert by_label(samples, "postee_retries_total", "type") == {"http": 1}
    assert by_label(samples, "postee_dlq_records_total", "stage") == {"decode": 1, "execute": 1}
    decisions = {
        (dict(labels)["plugin"], dict(labels)["decision"]): v
        for (n, labels), v in samples.items()
        if n == "postee_plugin_decisions_total"
    }
    assert decisions == {("deduplicated", "passed"): 1, ("deduplicated", "dropped"): 1}
    responses = by_label(samples, "postee_http_responses_total", "code")
    assert responses["202"] == 6 and responses["400"] == 1
    assert samples[("postee_ingest_ack_seconds_count", ())] == 6
    assert samples[("postee_ingest_ack_seconds_sum", ())] > 0
    # Every record of the events topic is routed, the undecodable one too.
    assert samples[("postee_routing_seconds_count", ())] == 7
    assert by_label(samples, "postee_action_duration_seconds_count", "type") == {
        "exec": 3,
        "http": 2,
    }
    # One observation per command's final outcome (the retried http command: once).
    assert by_label(samples, "postee_event_to_outcome_seconds_count", "type") == {
        "exec": 3,
        "http": 1,
    }
    assert all(
        v > 0 for v in by_label(samples, "postee_event_to_outcome_seconds_sum", "type").values()
    )
    lag = by_label(samples, "postee_consumer_lag", "topic")
    assert lag and all(v >= 0 for v in lag.values())
    for (_, labels), _v in samples.items():  # bounded labels: never an id
        assert not set(dict(labels).values()) & set(ids.values())


def test_a_worker_without_ingest_serves_only_probes_and_metrics(
    bootstrap: str, module_tmp: Path, log_dir: Path
) -> None:
    config = write_config(module_tmp, free_port())
    handle = start_worker_without_ingest(bootstrap, config, log_dir, "no-ingest")
    try:
        ready = httpx.get(handle.base_url + "/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert httpx.get(handle.base_url + "/livez", timeout=5).status_code == 200
        answered = by_label(scrape(handle.base_url), "postee_http_responses_total", "code")
        assert answered.get("200", 0) >= 2  # the two probes above, counted
        assert httpx.post(handle.base_url + "/", json={"a": 1}, timeout=5).status_code in (
            404,
            405,
        )
    finally:
        handle.stop()


def test_probes_on_a_healthy_worker(worker):
    assert httpx.get(worker.base_url + "/livez", timeout=5).status_code == 200
    ready = httpx.get(worker.base_url + "/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "broker": "ok", "partitions": "ok", "config": "ok"}
    assert httpx.get(worker.base_url + "/healthz", timeout=5).status_code == 200


def test_every_log_line_is_json(worker):
    # Last in the module: the worker is stopped so that its whole log is written.
    assert worker.stop() == 0
    lines = worker.log().splitlines()
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= record.keys(), line
    assert any("ingest bridge listening" in json.loads(line)["message"] for line in lines)


# --- probes while the broker goes away ----------------------------------------------------


class PrivateBroker:
    """A broker of our own (scripts/kafka with other ports and state folder)."""

    def __init__(self, state: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "POSTEE_KAFKA_PORT": str(self.port),
            "POSTEE_KAFKA_CONTROLLER_PORT": str(free_port()),
            "POSTEE_KAFKA_STATE": str(state),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    def run(self, command: str) -> None:
        done = subprocess.run(
            [str(REPO / "scripts" / "kafka"), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    broker = PrivateBroker(tmp_path / "kafka")
    broker.run("start")
    yield broker
    broker.run("stop")


def poll_until(worker: Worker, ready_status: int) -> dict[str, Any]:
    """Poll /readyz until it answers `ready_status`; /livez must answer 200 every time."""
    end = time.monotonic() + DEADLINE_S * 2
    last = None
    while time.monotonic() < end:
        assert worker.process.poll() is None, worker.log()
        assert httpx.get(worker.base_url + "/livez", timeout=5).status_code == 200
        ready = httpx.get(worker.base_url + "/readyz", timeout=10)
        last = ready.json()
        if ready.status_code == ready_status:
            return dict(last)
        time.sleep(0.2)  # probe interval, polled against the deadline
    raise AssertionError(f"/readyz never answered {ready_status}; last: {last}")


def test_readyz_follows_the_broker_while_livez_stays_up(private_broker, tmp_path, log_dir):
    config = write_config(tmp_path, free_port())
    worker = start_worker(
        private_broker.bootstrap, config, log_dir, "probes", startup_deadline_s=90
    )
    try:
        assert poll_until(worker, 200)["status"] == "ready"
        private_broker.run("stop")
        down = poll_until(worker, 503)
        assert down["broker"] == "unreachable" and "broker" in down["failing"], down
        private_broker.run("start")
        assert poll_until(worker, 200)["status"] == "ready"
    finally:
        worker.stop()
