"""SIGTERM with actions in flight: they finish within the grace period or are killed and
recorded; the worker exits 0; after a restart no command is left without an outcome and
none runs twice."""

from __future__ import annotations

import textwrap
import time

import httpx
import pytest

from tests.kafka_support import start_worker, unique_prefix, value

pytestmark = pytest.mark.kafka


async def test_sigterm_lets_in_flight_actions_finish_or_records_them_killed(
    bootstrap, log_dir, tmp_path, reader_factory
):
    started = tmp_path / "started"
    started.mkdir()
    config = tmp_path / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: quick
            input: input.test == "quick"
            actions: [finish-soon]
          - name: endless
            input: input.test == "endless"
            actions: [never-finish]
        actions:
          - name: finish-soon
            type: exec
            enable: true
            exec-script: touch {started}/quick; sleep 1; echo finished
          - name: never-finish
            type: exec
            enable: true
            exec-script: touch {started}/endless; sleep 120
    """)
    )
    prefix = unique_prefix("shutdown")
    extra = {"POSTEE_SHUTDOWN_GRACE_S": "3"}
    worker = start_worker(bootstrap, config, log_dir, "shutdown", extra, prefix=prefix)
    ids = {
        name: httpx.post(worker.base_url + "/", json={"test": name}, timeout=10).json()["id"]
        for name in ("quick", "endless")
    }
    end = time.monotonic() + 30
    while len(list(started.iterdir())) < 2:  # both scripts are running
        assert time.monotonic() < end, "the actions never started"
        time.sleep(0.05)
    stopping = time.monotonic()
    assert worker.stop() == 0
    assert time.monotonic() - stopping < 15  # the grace period, not the 120 s script

    outcomes = await reader_factory(worker.topic("outcomes"))
    quick = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == ids["quick"]
    )
    endless = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == ids["endless"]
    )
    assert (
        value(quick[0])["status"] == "succeeded"
        and value(quick[0])["detail"]["stdout"] == "finished\n"
    )
    assert value(endless[0])["status"] == "failed" and "shutting down" in value(endless[0])["error"]

    # After a restart the unacknowledged commands come back, and are skipped, not rerun.
    again = start_worker(bootstrap, config, log_dir, "shutdown", extra, prefix=prefix)
    try:
        marker = httpx.post(again.base_url + "/", json={"test": "none"}, timeout=10).json()["id"]
        await outcomes.wait_for(
            lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == marker
        )
        for event_id in ids.values():
            records = [
                value(m)
                for m in outcomes.seen
                if value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id
            ]
            assert records[0]["status"] != "skipped"
            assert all(r["status"] == "skipped" for r in records[1:])
    finally:
        again.stop()
