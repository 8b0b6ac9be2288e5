"""Real-broker helpers for the integration and end-to-end tests.

Every wait polls against a deadline; nothing sleeps for synchronisation.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

#: How long any wait for a record or a service may take before the test fails.
DEADLINE_S = 45.0
#: How long a worker or runner may take to start (topics, group join) on a loaded machine.
STARTUP_DEADLINE_S = 90.0

REPO = Path(__file__).resolve().parent.parent


#: Every prefix this test process handed out: the topics it may delete (other test runs
#: can share the broker, and their topics are theirs).
ISSUED_PREFIXES: set[str] = set()


def unique_prefix(label: str) -> str:
    prefix = f"test-{label}-{uuid.uuid4().hex[:8]}"
    ISSUED_PREFIXES.add(prefix)
    return prefix


def issued_by_us(topic: str) -> bool:
    """A topic of one of our prefixes: `<prefix>.x`, or Faust's `<prefix>-...` ones."""
    return any(topic.startswith((f"{p}.", f"{p}-")) for p in ISSUED_PREFIXES)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def broker_reachable(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await asyncio.wait_for(admin.start(), 10)
        await admin.close()
        return True
    except Exception:
        return False


@dataclass
class TopicReader:
    """Reads one topic from the beginning and keeps everything it saw."""

    consumer: AIOKafkaConsumer
    seen: list[Any] = field(default_factory=list)

    async def wait_for(
        self, predicate: Callable[[Any], bool], count: int = 1, deadline_s: float = DEADLINE_S
    ) -> list[Any]:
        """Wait until `count` records satisfy `predicate`; return them."""
        end = time.monotonic() + deadline_s
        while True:
            found = [m for m in self.seen if predicate(m)]
            if len(found) >= count:
                return found
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {deadline_s}s: {len(found)}/{count} matching records "
                    f"among {len(self.seen)} on {self.consumer.subscription()}"
                )
            batch = await self.consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
            for messages in batch.values():
                self.seen.extend(messages)

    async def drain_until(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Everything up to and including the first record matching `predicate`."""
        await self.wait_for(predicate)
        index = next(i for i, m in enumerate(self.seen) if predicate(m))
        return self.seen[: index + 1]


def value(message: Any) -> Any:
    return json.loads(message.value)


def kind(name: str, **fields: object) -> Callable[[Any], bool]:
    """Selects records of one `kind` whose fields have these values."""
    return lambda m: (
        (v := value(m))["kind"] == name and all(v.get(k) == x for k, x in fields.items())
    )


def write_config(directory: Path, text: str) -> Path:
    """A cfg.yaml of its own (dedented) in `directory`."""
    path = directory / f"cfg-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def outcomes_of(event_id: str) -> Callable[[Any], bool]:
    """Selects the outcome records (every attempt) of one event."""
    return lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id


async def open_reader(bootstrap: str, topic: str) -> TopicReader:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    return TopicReader(consumer)


async def produce(
    bootstrap: str,
    topic: str,
    value: bytes,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


class Process:
    """A `postee` process started by a test, logging to `log_path`."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, and its exit status (killed if it does not stop within 30 s)."""
        if self.process.poll() is None:
            if sys.exc_info()[0] is not None:  # stopped while a test fails
                self.dump_tasks()
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def dump_tasks(self, deadline_s: float = 5.0) -> None:
        """Have the process write its asyncio tasks and their stacks into its log (mode's
        SIGUSR1 handler): what a stuck worker waited for, for the post-mortem."""
        before = self.log_path.stat().st_size
        self.process.send_signal(signal.SIGUSR1)
        end, size = time.monotonic() + deadline_s, before
        while time.monotonic() < end:
            time.sleep(0.2)  # poll: the dump is written by the process, in pieces
            grown = self.log_path.stat().st_size
            if grown > before and grown == size:
                return  # it grew, then stopped growing
            size = grown


@dataclass
class Worker(Process):
    """A `postee run` process with its own topic prefix and port."""

    process: subprocess.Popen[bytes]
    prefix: str
    base_url: str
    log_path: Path
    bootstrap: str
    config: Path

    def cli(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `postee ARGS` against this worker's broker, prefix and config."""
        env = {
            **os.environ,
            "POSTEE_KAFKA": self.bootstrap,
            "POSTEE_TOPIC_PREFIX": self.prefix,
            "POSTEE_CFG": str(self.config),
            **(extra_env or {}),
        }
        return subprocess.run(
            [sys.executable, "-m", "streams", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    async def cli_async(
        self, *args: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`cli` off the event loop: the test's readers, sinks and receivers on this loop
        keep serving while the command runs (a replay waits on the worker, which may call
        them)."""
        return await asyncio.to_thread(self.cli, *args, extra_env=extra_env)

    def topic(self, suffix: str) -> str:
        return f"{self.prefix}.{suffix}"


def post_event(worker: Worker, event: dict[str, Any]) -> str:
    """POST an event to the worker's bridge; its id."""
    response = httpx.post(worker.base_url + "/", json=event, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def start_worker(
    bootstrap: str,
    config: Path,
    log_dir: Path,
    label: str,
    extra_env: dict[str, str] | None = None,
    prefix: str | None = None,
    startup_deadline_s: float = STARTUP_DEADLINE_S,
) -> Worker:
    return _start(
        "run",
        "POSTEE_HTTP",
        bootstrap,
        config,
        log_dir,
        label,
        extra_env,
        prefix,
        startup_deadline_s,
    )


def start_worker_without_ingest(bootstrap: str, config: Path, log_dir: Path, label: str) -> Worker:
    """`postee run` with POSTEE_INGEST=0: its address is POSTEE_PROBES_HTTP (probes,
    metrics and reload only)."""
    env = {"POSTEE_INGEST": "0"}
    return _start("run", "POSTEE_PROBES_HTTP", bootstrap, config, log_dir, label, env, None)


def start_ui(
    bootstrap: str,
    config: Path,
    log_dir: Path,
    prefix: str,
    extra_env: dict[str, str] | None = None,
) -> Worker:
    """A `postee ui` process on the prefix of a worker; healthy once its index caught up."""
    return _start("ui", "POSTEE_UI_HTTP", bootstrap, config, log_dir, "ui", extra_env, prefix)


def _start(
    command: str,
    address_variable: str,
    bootstrap: str,
    config: Path,
    log_dir: Path,
    label: str,
    extra_env: dict[str, str] | None,
    prefix: str | None,
    startup_deadline_s: float = STARTUP_DEADLINE_S,
) -> Worker:
    port = free_port()
    prefix = prefix or unique_prefix(label)
    log_path = log_dir / f"{command}-{prefix}-{port}.log"
    env = {
        **os.environ,
        "POSTEE_KAFKA": bootstrap,
        "POSTEE_CFG": str(config),
        "POSTEE_TOPIC_PREFIX": prefix,
        address_variable: f"127.0.0.1:{port}",
        "POSTEE_PARTITIONS": "2",
        "PYTHONUNBUFFERED": "1",  # a kill -9 loses none of its log
        **(extra_env or {}),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams", command],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, prefix, f"http://127.0.0.1:{port}", log_path, bootstrap, config)
    _wait_healthy(worker, startup_deadline_s)
    return worker


def _wait_healthy(worker: Worker, deadline_s: float = STARTUP_DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited with {worker.process.returncode}:\n{worker.log()}")
        try:
            if httpx.get(worker.base_url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)  # poll interval of a readiness probe with a deadline
    worker.stop()
    raise AssertionError(f"worker not healthy within {deadline_s}s:\n{worker.log()}")


@dataclass
class Runner(Process):
    """A `postee runner --name NAME` process; its scripts get `home` as $HOME."""

    process: subprocess.Popen[bytes]
    name: str
    home: Path
    log_path: Path

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def start_runner(
    bootstrap: str,
    config: Path,
    log_dir: Path,
    prefix: str,
    name: str,
    home: Path,
    extra_env: dict[str, str] | None = None,
) -> Runner:
    """Start a runner and wait until Faust reports it ready (its commands may come before:
    they wait on the broker)."""
    home.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"runner-{prefix}-{name}-{uuid.uuid4().hex[:6]}.log"
    env = {
        **os.environ,
        "POSTEE_KAFKA": bootstrap,
        "POSTEE_CFG": str(config),
        "POSTEE_TOPIC_PREFIX": prefix,
        "POSTEE_PARTITIONS": "2",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
        **(extra_env or {}),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams", "runner", "--name", name],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    runner = Runner(process, name, home, log_path)
    end = time.monotonic() + STARTUP_DEADLINE_S
    while "Worker]: Ready" not in runner.log():
        if process.poll() is not None:
            raise AssertionError(f"runner exited with {process.returncode}:\n{runner.log()}")
        if time.monotonic() > end:
            runner.stop()
            raise AssertionError(f"runner not ready within {STARTUP_DEADLINE_S}s:\n{runner.log()}")
        time.sleep(0.2)  # poll interval of a readiness check with a deadline
    return runner
