"""The Rego engine runs outside the worker's event loop: events that would crash it or
stall it are refused or contained, the worker stays up, and the stream goes on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kafka_support import DEADLINE_S, Worker, open_reader, start_worker, value
from tests.metrics_support import by_label, scrape

pytestmark = pytest.mark.kafka

CFG = """
routes:
  - name: names
    input: regex.match("^[a-z0-9-]+$", input.name)
    actions: [noop]
  - name: marker
    input: input.marker == true
    actions: [noop]
  - name: slow
    input: |
      input.slow == true
      count([x | some x in numbers.range(1, 100000000)]) > 0
    actions: [noop]
actions:
  - {name: noop, type: exec, enable: true, exec-script: "true"}
"""


@pytest.fixture(scope="module")
def config(module_tmp: Path) -> Path:
    path = module_tmp / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    return path


@pytest.fixture
def worker(bootstrap: str, config: Path, log_dir: Path) -> Iterator[Worker]:
    env = {"POSTEE_EVAL_WORKERS": "2", "POSTEE_EVAL_TIMEOUT_MS": "60000"}
    handle = start_worker(bootstrap, config, log_dir, "engine", extra_env=env)
    yield handle
    handle.stop()


def evaluators(worker: Worker) -> list[int]:
    """Pids of the worker's evaluator processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == worker.process.pid and b"streams.evaluator" in cmdline:
            found.append(int(entry.name))
    return found


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def wait_until_busy(worker: Worker, exclude: set[int]) -> list[int]:
    """The worker's evaluators once one of them (not in `exclude`) burns CPU on a job."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        pids = [p for p in evaluators(worker) if p not in exclude]
        if len(pids) == 2 and any(cpu_ticks(p) > 100 for p in pids):  # > 1 s of CPU
            return pids
        time.sleep(0.1)  # poll interval while the engine works
    raise AssertionError(f"no evaluator became busy:\n{worker.log()[-3000:]}")


async def routed_and_dlq(worker: Worker, event_id: str) -> tuple[dict, dict]:
    outcomes = await open_reader(worker.bootstrap, worker.topic("outcomes"))
    dlq = await open_reader(worker.bootstrap, worker.topic("dlq"))
    try:
        (routed,) = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "routed" and value(m)["event_id"] == event_id
        )
        (dead,) = await dlq.wait_for(lambda m: value(m)["event_id"] == event_id)
    finally:
        await outcomes.consumer.stop()
        await dlq.consumer.stop()
    return value(routed), value(dead)


async def executed(worker: Worker, event_id: str) -> dict:
    outcomes = await open_reader(worker.bootstrap, worker.topic("outcomes"))
    try:
        (outcome,) = await outcomes.wait_for(
            lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id
        )
    finally:
        await outcomes.consumer.stop()
    return value(outcome)


async def produce_on_partition_0(worker: Worker, *events: dict) -> list[str]:
    """Produce straight to partition 0 of the events topic; the ids the router gives them."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=worker.bootstrap, acks="all")
    await producer.start()
    try:
        placed = [
            await producer.send_and_wait(
                worker.topic("events"), json.dumps(e).encode(), partition=0
            )
            for e in events
        ]
    finally:
        await producer.stop()
    return [f"{m.topic}:{m.partition}:{m.offset}" for m in placed]


async def test_a_50_kb_string_under_regex_is_refused_and_the_partition_goes_on(
    worker: Worker, bootstrap: str, config: Path, log_dir: Path
) -> None:
    bad, marker = await produce_on_partition_0(worker, {"name": "a" * 50_000}, {"marker": True})
    routed, dead = await routed_and_dlq(worker, bad)
    reason = "input refused: event has a string longer than 32768 bytes (POSTEE_MAX_STRING_BYTES)"
    assert routed["error"] == reason and routed["routes"] == []
    assert dead["stage"] == "route" and dead["reason"] == reason
    assert (await executed(worker, marker))["status"] == "succeeded"
    assert worker.process.poll() is None
    # A restart (with the event possibly redelivered) does not crash either.
    assert worker.stop() == 0
    again = start_worker(bootstrap, config, log_dir, "engine", prefix=worker.prefix)
    try:
        (after,) = await produce_on_partition_0(again, {"marker": True})
        assert (await executed(again, after))["status"] == "succeeded"
        assert again.process.poll() is None
    finally:
        again.stop()


async def test_a_200000_value_array_does_not_stall_the_worker(worker: Worker) -> None:
    slow_pings: list[float] = []
    stop = threading.Event()

    def ping() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                started = time.monotonic()
                assert client.get(worker.base_url + "/ping").status_code == 200
                if (took := time.monotonic() - started) >= 1:
                    slow_pings.append(took)

    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        event = {"numbers": [7] * 200_000}
        bound = "more than 20000 JSON values (POSTEE_MAX_INPUT_VALUES)"
        body = json.dumps(event, separators=(",", ":"))
        assert len(body) > 400_000
        response = httpx.post(worker.base_url + "/", content=body, timeout=30)
        assert response.status_code == 400 and bound in response.json()["error"]
        # Straight to the topic, where no bridge stands in the way: recorded, not evaluated.
        big, after = await produce_on_partition_0(worker, event, {"marker": True})
        routed, dead = await routed_and_dlq(worker, big)
        assert bound in routed["error"] and dead["stage"] == "route"
        assert (await executed(worker, after))["status"] == "succeeded"
    finally:
        stop.set()
        pinger.join()
    assert slow_pings == []


async def test_evaluators_killed_mid_event_retry_once_then_dead_letter(worker: Worker) -> None:
    (slow,) = await produce_on_partition_0(worker, {"slow": True})
    first = wait_until_busy(worker, exclude=set())
    for pid in first:
        os.kill(pid, signal.SIGKILL)
    # The event is retried once, on a fresh evaluator: kill that one too.
    for pid in wait_until_busy(worker, exclude=set(first)):
        os.kill(pid, signal.SIGKILL)
    routed, dead = await routed_and_dlq(worker, slow)
    assert routed["error"].startswith("evaluator failed twice on this event")
    assert "killed by SIGKILL" in dead["reason"] and dead["stage"] == "route"
    restarts = by_label(scrape(worker.base_url), "postee_evaluator_restarts_total", "cause")
    assert restarts == {"crash": 4}  # two processes killed, twice
    (marker,) = await produce_on_partition_0(worker, {"marker": True})
    assert (await executed(worker, marker))["status"] == "succeeded"
    assert worker.process.poll() is None


FUZZ_CFG = """
routes:
  - name: regex
    input: regex.match("^[a-z0-9-]+$", input.name)
    actions: [noop]
  - name: sprintf
    input: sprintf("%s/%v", [input.name, input.n]) == "a/1"
    actions: [noop]
  - name: contains
    input: |
      names := {"nginx", "alpine"}
      contains(input.image, names[_])
    actions: [noop]
  - name: iterate
    input: |
      some tag in input.tags
      regex.match("^pci-[0-9]+$", tag)
    actions: [noop]
  - name: marker
    input: input.marker == true
    actions: [noop]
actions:
  - {name: noop, type: exec, enable: true, exec-script: "true"}
"""
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["a", "nginx:1", "pci-12", "a" * 40_000, "é" * 9_000, "\\\\", '"'])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)
fuzz_events = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "n": json_values,
        "image": json_values,
        "tags": st.lists(json_values, max_size=6) | json_values,
        "bulk": st.sampled_from([[1] * 25_000, list(range(50))]),
        "extra": json_values,
    },
)


@pytest.fixture(scope="module")
def fuzz_worker(bootstrap: str, module_tmp: Path, log_dir: Path) -> Iterator[Worker]:
    path = module_tmp / "fuzz.yaml"
    path.write_text(textwrap.dedent(FUZZ_CFG))
    handle = start_worker(bootstrap, path, log_dir, "engine-fuzz")
    yield handle
    handle.stop()


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(events=st.lists(fuzz_events, min_size=10, max_size=25))
def test_fuzzed_events_are_each_accounted_for(fuzz_worker: Worker, events: list[dict]) -> None:
    asyncio.run(_fuzz(fuzz_worker, events))


async def _fuzz(worker: Worker, events: list[dict]) -> None:
    ids = await produce_on_partition_0(worker, *events, {"marker": True})
    outcomes = await open_reader(worker.bootstrap, worker.topic("outcomes"))
    try:
        await outcomes.wait_for(
            lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == ids[-1]
        )
        routed = {
            value(m)["event_id"]: value(m) for m in outcomes.seen if value(m)["kind"] == "routed"
        }
    finally:
        await outcomes.consumer.stop()
    assert set(ids) <= set(routed)  # every event has its routed record, in order before the marker
    for event_id in ids[:-1]:
        record = routed[event_id]
        assert record["error"] is None or record["error"].startswith(
            ("input refused", "rule evaluation failed")
        )
    assert worker.process.poll() is None
