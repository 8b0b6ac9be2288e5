"""Hot reload: a route added by SIGHUP, by `POST /reload` and by the file watch matches
the next event without a restart; an invalid file, or one that brings an action type the
worker does not consume, is refused and the old routes keep working; a command in flight
during a reload finishes; records name the new version."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from streams import config as config_module
from tests.kafka_support import (
    DEADLINE_S,
    TopicReader,
    Worker,
    outcomes_of,
    post_event,
    start_worker,
    value,
)
from tests.metrics_support import by_label, scrape

pytestmark = pytest.mark.kafka

ACTIONS = """
actions:
  - name: mark
    type: exec
    enable: true
    env: [OUT={out}]
    exec-script: printf '%s\\n' "$POSTEE_EVENT_ID" >> "$OUT"
  - name: wait-for-go
    type: exec
    enable: true
    env: [DIR={out_dir}]
    exec-script: |
      touch "$DIR/started"
      while [ ! -e "$DIR/go" ]; do sleep 0.05; done
"""


def route(name: str, kind: str, action: str = "mark") -> str:
    return f"  - {{name: {name}, input: 'input.kind == \"{kind}\"', actions: [{action}]}}\n"


def write_config(path: Path, *routes: str) -> str:
    """Write the file; its config version (as the worker will compute it)."""
    out_dir = path.parent
    text = "routes:\n" + "".join(routes) + ACTIONS.format(out=out_dir / "marks", out_dir=out_dir)
    path.write_text(textwrap.dedent(text))
    return config_module.load(path).version


def reloads(worker: Worker) -> dict[str, float]:
    return by_label(scrape(worker.base_url), "postee_config_reloads_total", "result")


def until(condition: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)  # poll interval


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return tmp_path / "cfg.yaml"


@pytest.fixture
def worker(bootstrap: str, config_path: Path, log_dir: Path) -> Iterator[Worker]:
    write_config(config_path, route("first", "a"), route("slow", "slow", "wait-for-go"))
    handle = start_worker(bootstrap, config_path, log_dir, "reload")
    yield handle
    handle.stop()


async def routed_of(outcomes: TopicReader, event_id: str) -> dict:
    (routed,) = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == event_id
    )
    return value(routed)


async def test_sighup_and_post_reload_add_routes_and_a_bad_file_is_refused(
    worker: Worker, config_path: Path, reader_factory
) -> None:
    outcomes = await reader_factory(worker.topic("outcomes"))
    first_version = config_module.load(config_path).version
    before = await routed_of(outcomes, post_event(worker, {"kind": "b"}))
    assert (before["routes"], before["config_version"]) == ([], first_version)

    # A command in flight across both reloads: it has started and waits for "go".
    slow = post_event(worker, {"kind": "slow"})
    until((config_path.parent / "started").exists, "the slow command to start")

    # SIGHUP: route "second" is added.
    second_version = write_config(
        config_path, route("first", "a"), route("slow", "slow", "wait-for-go"), route("second", "b")
    )
    os.kill(worker.process.pid, signal.SIGHUP)
    until(lambda: reloads(worker).get("applied") == 1, "the SIGHUP reload")
    after = await routed_of(outcomes, post_event(worker, {"kind": "b"}))
    assert (after["routes"], after["config_version"]) == (["second"], second_version)

    # POST /reload: route "third" is added; the answer names both versions.
    third_version = write_config(
        config_path,
        route("first", "a"),
        route("slow", "slow", "wait-for-go"),
        route("second", "b"),
        route("third", "c"),
    )
    answer = httpx.post(worker.base_url + "/reload", timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "applied": True,
        "version": third_version,
        "previous": second_version,
        "error": None,
    }
    third = await routed_of(outcomes, post_event(worker, {"kind": "c"}))
    assert (third["routes"], third["config_version"]) == (["third"], third_version)

    # The command that started under the first config finishes.
    (config_path.parent / "go").touch()
    (slow_outcome,) = await outcomes.wait_for(
        lambda m: outcomes_of(slow)(m) and value(m)["kind"] == "outcome"
    )
    assert value(slow_outcome)["status"] == "succeeded"

    # An invalid file: refused by both triggers, naming the file, route and key.
    good = config_path.read_text()
    config_path.write_text(good.replace('input.kind == "c"', "input.kind == = 1"))
    refused = httpx.post(worker.base_url + "/reload", timeout=30)
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert (body["applied"], body["version"]) == (False, third_version)
    assert str(config_path) in body["error"] and "route 'third'" in body["error"]
    assert "key 'input'" in body["error"]
    os.kill(worker.process.pid, signal.SIGHUP)
    until(lambda: reloads(worker).get("refused") == 2, "the refused SIGHUP reload")

    # A valid file that brings an action type this worker does not consume (it subscribed
    # exec only): refused, since its commands would wait unseen until a restart.
    config_path.write_text(
        good + "  - {name: ship, type: http, enable: true, url: 'http://127.0.0.1:9/'}\n"
    )
    new_type = httpx.post(worker.base_url + "/reload", timeout=30)
    assert new_type.status_code == 422, new_type.text
    assert new_type.json()["version"] == third_version
    assert "action type(s) http are new to this worker" in new_type.json()["error"]
    assert "runs commands of exec only: restart it" in new_type.json()["error"]
    assert reloads(worker) == {"applied": 2, "refused": 3}
    still = await routed_of(outcomes, post_event(worker, {"kind": "c"}))
    assert (still["routes"], still["config_version"]) == (["third"], third_version)
    marks = (config_path.parent / "marks").read_text().split()
    assert after["event_id"] in marks and third["event_id"] in marks
    assert worker.process.poll() is None


async def test_the_file_watch_reloads_a_changed_file(
    bootstrap: str, tmp_path: Path, log_dir: Path, reader_factory
) -> None:
    path = tmp_path / "cfg.yaml"
    write_config(path, route("first", "a"))
    worker = start_worker(bootstrap, path, log_dir, "watch", {"POSTEE_RELOAD_WATCH_S": "0.2"})
    try:
        outcomes = await reader_factory(worker.topic("outcomes"))
        version = write_config(path, route("first", "a"), route("second", "b"))
        until(lambda: reloads(worker).get("applied") == 1, "the watch to reload")
        routed = await routed_of(outcomes, post_event(worker, {"kind": "b"}))
        assert (routed["routes"], routed["config_version"]) == (["second"], version)
    finally:
        worker.stop()
