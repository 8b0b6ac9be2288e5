"""A Trivy report through the broker to the docker action and back as an outcome."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import httpx
import pytest

from streams.records import schema_errors
from tests.kafka_support import start_worker, value

pytestmark = pytest.mark.kafka


@pytest.fixture
def engine(engine_host: str, test_image: str) -> tuple[str, str]:
    return engine_host, test_image


async def test_trivy_report_runs_a_container(
    bootstrap, log_dir, tmp_path: Path, engine, samples, reader_factory
):
    host, image = engine
    config = tmp_path / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: trivy-critical
            input: |
              some result in input.Results
              some vuln in result.Vulnerabilities
              vuln.Severity == "CRITICAL"
            actions: [scan-report]
        actions:
          - name: scan-report
            type: docker
            enable: true
            docker-image-name: {image}
            docker-pull: never
            docker-network: none
            docker-cmd:
              - sh
              - -c
              - echo "artifact=$1"; wc -c < "$POSTEE_EVENT_FILE"
              - sh
              - event.input.ArtifactName
    """)
    )
    worker = start_worker(bootstrap, config, log_dir, "docker", {"DOCKER_HOST": host})
    try:
        report = (samples / "upstream" / "trivy-input.json").read_bytes()
        response = httpx.post(worker.base_url + "/", content=report, timeout=10)
        assert response.status_code == 202
        event_id = response.json()["id"]
        outcomes = await reader_factory(worker.topic("outcomes"))
        (outcome,) = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id
        )
        v = value(outcome)
        assert schema_errors("outcome", v) == []
        assert v["status"] == "succeeded", v
        artifact = json.loads(report)["ArtifactName"]
        size = len(json.dumps(json.loads(report), ensure_ascii=False).encode())
        assert v["detail"]["stdout"].splitlines() == [f"artifact={artifact}", str(size)]
        assert v["detail"]["image"] == image and v["detail"]["container_id"]
    finally:
        worker.stop()
