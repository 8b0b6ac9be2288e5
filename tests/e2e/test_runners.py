"""Actions with `runs-on`: executed only by `postee runner --name NAME`, through its own
topic, with outcomes naming the runner; commands wait for a runner that is down; a runner
killed mid-command reruns it with a higher attempt."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from streams import runners_admin
from streams.records import schema_errors
from streams.settings import Settings
from tests.http_sink import Sink, http_sink
from tests.kafka_support import (
    DEADLINE_S,
    REPO,
    Runner,
    Worker,
    free_port,
    outcomes_of,
    post_event,
    start_runner,
    start_worker,
    unique_prefix,
    value,
)
from tests.metrics_support import by_label, scrape

pytestmark = pytest.mark.kafka


def runner_actions(sink_url: str) -> list[dict]:
    """Every action that runs on a runner. Paths are relative to the runner's $HOME, as a
    node's own directory; the forensic log is the seed's (examples/cfg-http-forensics.yaml)."""
    seed = yaml.safe_load((REPO / "examples" / "cfg-http-forensics.yaml").read_text())
    save, ship = seed["actions"]
    ship["url"] = ship["url"].replace("http://127.0.0.1:8000", sink_url)
    mark = 'printf "%s\\n" "$POSTEE_EVENT_ID" >> "$HOME/marks"'
    # The first attempt leaves its pid and hangs; a rerun finds the file and finishes.
    hang_once = textwrap.dedent("""
        f="$HOME/started-$POSTEE_COMMAND_ID"
        if [ ! -e "$f" ]; then echo $$ > "$f"; sleep 120; fi
        echo "finished $POSTEE_COMMAND_ID"
    """)
    return [
        {**save, "runs-on": "node-a"},
        {**ship, "runs-on": "node-a"},
        {
            "name": "mark-a",
            "type": "exec",
            "enable": True,
            "runs-on": "node-a",
            "exec-script": mark,
        },
        {
            "name": "mark-b",
            "type": "exec",
            "enable": True,
            "runs-on": "node-b",
            "exec-script": mark,
        },
        {
            "name": "hang-c",
            "type": "exec",
            "enable": True,
            "runs-on": "node-c",
            "exec-script": hang_once,
        },
    ]


def worker_config(directory: Path, sink_url: str) -> Path:
    routes = [
        {"name": "split", "input": 'input.test == "split"', "actions": ["mark-a", "notify"]},
        {
            "name": "mixed",
            "input": 'input.test == "mixed"',
            "serialize-actions": True,
            "actions": ["mark-a", "notify"],
        },
        {
            "name": "tracee-trc2-forensics",
            "input": 'input.SigMetadata.ID == "TRC-2"',
            "serialize-actions": True,
            "actions": ["save-forensic-log", "ship-forensic-log"],
        },
        {"name": "to-b", "input": 'input.test == "to-b"', "actions": ["mark-b"]},
        {"name": "hang", "input": 'input.test == "hang"', "actions": ["hang-c"]},
    ]
    notify = {"name": "notify", "type": "http", "enable": True, "url": f"{sink_url}/notify"}
    path = directory / "worker.yaml"
    path.write_text(
        yaml.safe_dump({"routes": routes, "actions": [*runner_actions(sink_url), notify]})
    )
    return path


def runner_config(home: Path, sink_url: str) -> Path:
    """A runner's own file: only actions, its forensic log in its own directory."""
    actions = runner_actions(sink_url)
    log = home / "forensics" / "tracee-events.log"
    for action in actions:
        if action["name"] == "save-forensic-log":
            action["env"] = [f"FORENSIC_LOG={log}"]
        if action["name"] == "ship-forensic-log":
            action["body-file"] = str(log)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "runner.yaml"
    path.write_text(yaml.safe_dump({"actions": actions}))
    return path


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


@pytest.fixture(scope="module")
def deployment(bootstrap, module_tmp, log_dir, sink) -> Iterator[tuple[Worker, Runner]]:
    """The worker and runner node-a (node-b and node-c start in their tests)."""
    prefix = unique_prefix("runners")
    worker = start_worker(
        bootstrap, worker_config(module_tmp, sink.base_url), log_dir, "runners", prefix=prefix
    )
    home = module_tmp / "node-a"
    node_a = start_runner(
        bootstrap, runner_config(home, sink.base_url), log_dir, prefix, "node-a", home
    )
    yield worker, node_a
    node_a.stop()
    worker.stop()


def another_runner(
    worker: Worker, home: Path, sink: Sink, name: str, extra_env: dict[str, str] | None = None
) -> Runner:
    """Runner `name` of the worker's deployment, with its own directory and config."""
    config = runner_config(home, sink.base_url)
    log_dir = worker.log_path.parent
    return start_runner(worker.bootstrap, config, log_dir, worker.prefix, name, home, extra_env)


def settings_of(worker: Worker) -> Settings:
    return Settings.from_env(
        {"POSTEE_KAFKA": worker.bootstrap, "POSTEE_TOPIC_PREFIX": worker.prefix}
    )


def marks(home: Path) -> list[str]:
    path = home / "marks"
    return path.read_text().split() if path.exists() else []


async def test_runs_on_action_runs_only_in_its_runner(deployment, module_tmp, sink, reader_factory):
    worker, node_a = deployment
    home_b = module_tmp / "node-b-idle"
    node_b = another_runner(worker, home_b, sink, "node-b")
    try:
        event_id = post_event(worker, {"test": "split"})
        outcomes = await reader_factory(worker.topic("outcomes"))
        found = [value(m) for m in await outcomes.wait_for(outcomes_of(event_id), count=2)]
        by_action = {o["action"]: o for o in found}
        for outcome in found:
            assert schema_errors("outcome", outcome) == []
            assert outcome["status"] == "succeeded"
        assert by_action["mark-a"]["runner"] == "node-a"
        assert by_action["notify"]["runner"] is None
        assert marks(node_a.home) == [event_id] and marks(home_b) == []
        (request,) = sink.on("/notify")
        assert request.headers["Idempotency-Key"] == by_action["notify"]["command_id"]

        # A serialized route across places: the runner's exec, then the worker's http.
        mixed = post_event(worker, {"test": "mixed"})
        first, second = (value(m) for m in await outcomes.wait_for(outcomes_of(mixed), count=2))
        assert (first["action"], first["runner"]) == ("mark-a", "node-a")
        assert (second["action"], second["runner"]) == ("notify", None)
        assert second["started_at"] >= first["finished_at"]
        assert mixed in marks(node_a.home) and marks(home_b) == []
    finally:
        node_b.stop()


async def test_seed_walkthrough_on_the_node(deployment, sink, reader_factory, samples):
    worker, node_a = deployment
    event = json.loads((samples / "tracee" / "trc-2-anti-debugging.json").read_text())
    event_id = post_event(worker, event)
    outcomes = await reader_factory(worker.topic("outcomes"))
    saved, shipped = (value(m) for m in await outcomes.wait_for(outcomes_of(event_id), count=2))
    assert (saved["action"], saved["status"], saved["runner"]) == (
        "save-forensic-log",
        "succeeded",
        "node-a",
    )
    assert (shipped["action"], shipped["status"], shipped["runner"]) == (
        "ship-forensic-log",
        "succeeded",
        "node-a",
    )
    assert shipped["started_at"] >= saved["finished_at"]  # the upload after the write
    log = node_a.home / "forensics" / "tracee-events.log"
    assert event in [json.loads(line) for line in log.read_text().splitlines()]
    (upload,) = sink.on(f"/forensics/{event['Context']['hostName']}")
    assert upload.body == log.read_bytes()
    assert upload.headers["X-Tracee-Signature"] == "TRC-2"


async def test_commands_wait_for_a_stopped_runner_and_run_once(
    deployment, module_tmp, sink, reader_factory
):
    worker, _ = deployment
    home = module_tmp / "node-b"
    node_b = another_runner(worker, home, sink, "node-b")
    outcomes = await reader_factory(worker.topic("outcomes"))
    warm_up = post_event(worker, {"test": "to-b"})
    await outcomes.wait_for(outcomes_of(warm_up))
    assert node_b.stop() == 0

    waiting = [post_event(worker, {"test": "to-b", "n": n}) for n in range(5)]
    status = await _runner_status(settings_of(worker), "node-b", lambda s: s.lag == len(waiting))
    assert (status.members, status.state) == (0, "Empty")
    assert status.last is not None and status.last["state"] == "finished"
    listed = await worker.cli_async("runners", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}
    assert rows["node-b"]["lag"] == len(waiting) and rows["node-a"]["members"] == 1
    shown = await worker.cli_async("timeline", waiting[0], "--json")
    assert shown.returncode == 0, shown.stderr
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    (pending,) = [e for e in entries if e["kind"] == "pending"]
    assert pending["value"]["waiting_for"] == "runner node-b"
    assert any(
        e["kind"] == "command" and e["topic"] == worker.topic("runner.node-b") for e in entries
    )

    node_b = another_runner(worker, home, sink, "node-b")
    try:
        for event_id in waiting:
            await outcomes.wait_for(outcomes_of(event_id))
        marker = post_event(worker, {"test": "to-b", "marker": True})
        await outcomes.wait_for(outcomes_of(marker))
    finally:
        node_b.stop()
    for event_id in waiting:
        # A redelivery after the restart may add a `skipped` outcome (the ledger caught
        # it); the command itself ran once, as the marks below show.
        ran = [value(m) for m in outcomes.seen if outcomes_of(event_id)(m)]
        (outcome,) = [o for o in ran if o["status"] != "skipped"]
        assert (outcome["status"], outcome["attempt"], outcome["runner"]) == (
            "succeeded",
            1,
            "node-b",
        )
    assert sorted(marks(home)) == sorted([warm_up, *waiting, marker])  # each exactly once


async def test_kill_9_mid_command_reruns_it_with_a_higher_attempt(
    deployment, module_tmp, sink, reader_factory
):
    worker, _ = deployment
    home = module_tmp / "node-c"
    node_c = another_runner(worker, home, sink, "node-c")
    event_id = post_event(worker, {"test": "hang", "id": uuid.uuid4().hex})
    outcomes = await reader_factory(worker.topic("outcomes"))
    (routed,) = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == event_id
    )
    (command_id,) = [c["command_id"] for c in value(routed)["commands"] if c["action"] == "hang-c"]
    started = home / f"started-{command_id}"
    ledger = await reader_factory(runners_admin.ledger_changelog(settings_of(worker), "node-c"))
    await ledger.wait_for(
        lambda m: json.loads(m.key) == command_id and value(m)["state"] == "started"
    )
    await _until(started.exists, "the first attempt started")
    node_c.kill()
    # The orphaned script of the killed runner, still sleeping: end it too.
    os.killpg(int(started.read_text()), signal.SIGKILL)

    node_c = another_runner(worker, home, sink, "node-c")
    try:
        (outcome,) = await outcomes.wait_for(outcomes_of(event_id))
    finally:
        node_c.stop()
    outcome = value(outcome)
    assert (outcome["status"], outcome["attempt"], outcome["runner"]) == ("succeeded", 2, "node-c")
    assert outcome["command_id"] == command_id
    assert outcome["detail"]["stdout"] == f"finished {command_id}\n"


async def _runner_status(settings: Settings, name: str, ok) -> runners_admin.RunnerStatus:
    seen = []

    async def check():
        statuses = {s.name: s for s in await runners_admin.runner_statuses(settings)}
        seen[:] = [statuses.get(name)]
        return statuses[name] if name in statuses and ok(statuses[name]) else None

    result = await _until(check, lambda: f"runner {name} in the wanted state; last: {seen}")
    assert isinstance(result, runners_admin.RunnerStatus)
    return result


async def _until(check, what):
    """Poll `check` (sync or async) until truthy, against the shared deadline."""
    end = time.monotonic() + DEADLINE_S
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > end:
            raise AssertionError(f"not within {DEADLINE_S}s: {what() if callable(what) else what}")
        await asyncio.sleep(0.1)  # poll interval, bounded by the deadline above


async def test_a_runner_serves_probes_metrics_and_reload_and_logs_json(
    deployment, module_tmp, sink
):
    worker, _ = deployment
    port = free_port()
    env = {"POSTEE_PROBES_HTTP": f"127.0.0.1:{port}", "POSTEE_LOG_FORMAT": "json"}
    node = another_runner(worker, module_tmp / "node-p", sink, "node-p", env)
    base = f"http://127.0.0.1:{port}"
    try:
        await _until(lambda: _get(base + "/readyz") == 200, "the runner's /readyz to answer 200")
        assert _get(base + "/livez") == 200
        reloaded = httpx.post(base + "/reload", timeout=30)
        assert reloaded.status_code == 200 and reloaded.json()["applied"], reloaded.text
        assert by_label(scrape(base), "postee_config_reloads_total", "result") == {"applied": 1}
        assert httpx.post(base + "/", json={"x": 1}, timeout=10).status_code in (404, 405)
    finally:
        assert node.stop() == 0
    lines = [line for line in node.log_path.read_text().splitlines() if line.strip()]
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.TransportError:
        return None
