"""`postee send` and `postee tail` against a running worker."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kafka_support import Worker, start_worker, value

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def worker(bootstrap: str, module_tmp: Path, log_dir: Path) -> Iterator[Worker]:
    config = module_tmp / "cfg.yaml"
    config.write_text(
        textwrap.dedent("""
        routes:
          - name: tracee
            input: startswith(input.SigMetadata.ID, "TRC-")
            actions: [echo-id]
        actions:
          - name: echo-id
            type: exec
            enable: true
            exec-script: echo "$POSTEE_EVENT_ID"
    """)
    )
    handle = start_worker(bootstrap, config, log_dir, "cli")
    yield handle
    handle.stop()


async def test_send_produces_each_file_and_tail_prints_outcomes(
    worker, bootstrap, samples, reader_factory
):
    files = sorted((samples / "tracee").glob("*.json"))
    sent = await worker.cli_async("send", *map(str, files))
    assert sent.returncode == 0, sent.stderr
    ids = [line.split("\t")[0] for line in sent.stdout.splitlines()]
    assert len(ids) == len(files) == 3

    outcomes = await reader_factory(worker.topic("outcomes"))
    finished = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] in ids, count=3
    )
    assert {value(m)["detail"]["stdout"].strip() for m in finished} == set(ids)

    tailed = await worker.cli_async(
        "tail", "outcomes", "--from-beginning", "--json", "--idle-timeout", "3"
    )
    assert tailed.returncode == 0, tailed.stderr
    printed = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert {r["value"]["event_id"] for r in printed if r["value"]["kind"] == "outcome"} >= set(ids)


def test_send_refuses_a_file_that_is_not_an_object(worker, bootstrap, tmp_path):
    bad = tmp_path / "list.json"
    bad.write_text("[1, 2]")
    result = worker.cli("send", str(bad))
    assert result.returncode != 0 and "JSON object" in result.stderr
