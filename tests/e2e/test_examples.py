"""The README's main job, end to end: examples/cfg-actions.yaml with the TRC-2 sample."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from tests.kafka_support import REPO, start_worker, value

pytestmark = pytest.mark.kafka

FORENSIC_LOG = Path("/tmp/postee-forensics/tracee-events.log")


async def test_cfg_actions_example_saves_trc2_to_the_forensic_log(
    bootstrap, log_dir, reader_factory, samples
):
    worker = start_worker(bootstrap, REPO / "examples" / "cfg-actions.yaml", log_dir, "example")
    try:
        event = json.loads((samples / "tracee" / "trc-2-anti-debugging.json").read_text())
        event["marker"] = uuid.uuid4().hex
        response = httpx.post(worker.base_url + "/", json=event, timeout=10)
        assert response.status_code == 202
        event_id = response.json()["id"]
        other = json.loads((samples / "tracee" / "trc-7-ld-preload.json").read_text())
        other_id = httpx.post(worker.base_url + "/", json=other, timeout=10).json()["id"]

        outcomes = await reader_factory(worker.topic("outcomes"))
        (outcome,) = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id
        )
        assert value(outcome)["status"] == "succeeded"
        assert event_id in value(outcome)["detail"]["stdout"]
        logged = [json.loads(line) for line in FORENSIC_LOG.read_text().splitlines() if line]
        assert event in logged
        (routed,) = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == other_id
        )
        assert value(routed)["routes"] == []  # TRC-7 is not the example's business
    finally:
        assert worker.stop() == 0  # SIGTERM: a clean exit


async def test_all_outputs_example_runs_and_routes_to_every_output(
    bootstrap, log_dir, reader_factory, samples
):
    """`postee run` starts with examples/cfg-all-outputs.yaml. Without its environment,
    a Trivy report reaches every output of its routes, whose outcomes say which secret
    is missing (and nothing is sent anywhere)."""
    worker = start_worker(bootstrap, REPO / "examples" / "cfg-all-outputs.yaml", log_dir, "all")
    try:
        report = json.loads((samples / "upstream" / "trivy-input.json").read_text())
        response = httpx.post(worker.base_url + "/", json=report, timeout=10)
        assert response.status_code == 202
        event_id = response.json()["id"]
        outcomes = await reader_factory(worker.topic("outcomes"))
        (routed,) = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == event_id
        )
        assert value(routed)["routes"] == ["trivy-critical", "trivy-sbom"]
        ran = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id, count=6
        )
        assert {value(m)["type"] for m in ran} == {
            "slack",
            "teams",
            "email",
            "jira",
            "nexusiq",
            "dependencytrack",
        }
        assert all(
            value(m)["status"] == "failed" and "is not set" in value(m)["error"] for m in ran
        )
    finally:
        assert worker.stop() == 0
