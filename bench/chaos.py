"""Delivery under faults: N events through an exec and an http action while the worker is
killed (-9), stopped (SIGTERM) or the broker restarted, then every guarantee is checked.

    .venv/bin/python -m bench.chaos [--events 2000] [--mode kill|sigterm|broker] [--faults 3]

Checks: every event has a routed record; every command (2 per event, ids are
deterministic) has a terminal outcome; the http sink saw every http command id and the
exec log every exec command id at least once. Prints the duplicates (commands run more
than once) and the time taken; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from streams import records
from tests.http_sink import Sink, http_sink

REPO = Path(__file__).resolve().parent.parent
ROUTE, ACTIONS = "chaos", ("log", "ship")
#: The worker's HTTP bridge, asked during a broker outage (it must say 503, never 202).
BRIDGE_PORT = 18082


class Worker:
    def __init__(self, bootstrap: str, prefix: str, config: Path, log: Path) -> None:
        self.env = {
            **os.environ,
            "POSTEE_KAFKA": bootstrap,
            "POSTEE_TOPIC_PREFIX": prefix,
            "POSTEE_CFG": str(config),
            "POSTEE_HTTP": f"127.0.0.1:{BRIDGE_PORT}",
            "POSTEE_PRODUCE_TIMEOUT_S": "3",
            "POSTEE_PARTITIONS": "4",
            "POSTEE_SHUTDOWN_GRACE_S": "5",
        }
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams", "run"],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def signal(self, sig: int) -> int:
        """Send a signal and wait for the exit without blocking the loop (the http sink
        lives on it and must keep answering while in-flight actions finish)."""
        assert self.process is not None
        self.process.send_signal(sig)
        return await asyncio.to_thread(self.process.wait, 60)


def write_config(directory: Path, sink: Sink) -> Path:
    path = directory / "cfg.yaml"
    path.write_text(
        textwrap.dedent(f"""
        routes:
          - name: {ROUTE}
            input: input.seq >= 0
            actions: [log, ship]
        actions:
          - name: log
            type: exec
            enable: true
            env: [OUT={directory / "exec.log"}]
            exec-script: echo "$POSTEE_COMMAND_ID" >> "$OUT"
          - name: ship
            type: http
            enable: true
            url: {sink.base_url}/ship
            retries: 10
            retry-backoff: 0.2
    """)
    )
    return path


async def produce(bootstrap: str, prefix: str, count: int) -> dict[str, str]:
    """Event id → the position of its record (command ids bind both)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    sent = []
    try:
        for seq in range(count):
            event_id = records.new_event_id()
            headers = records.event_headers(event_id, "kafka", records.utc_now())
            delivery = await producer.send(
                f"{prefix}.events",
                json.dumps({"seq": seq}).encode(),
                key=event_id.encode(),
                headers=headers,
            )
            sent.append((event_id, delivery))
        await producer.flush()
        placed = [(event_id, await delivery) for event_id, delivery in sent]
    finally:
        await producer.stop()
    return {i: f"{m.topic}:{m.partition}:{m.offset}" for i, m in placed}


class Progress:
    """Everything read back from the outcomes topic, from a consumer that rides out faults."""

    def __init__(self) -> None:
        self.routed: set[str] = set()
        self.terminal: set[str] = set()
        self.statuses: Counter[str] = Counter()

    async def follow(self, bootstrap: str, prefix: str, stop: asyncio.Event) -> None:
        consumer = AIOKafkaConsumer(
            f"{prefix}.outcomes",
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            while not stop.is_set():
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    for message in messages:
                        self.take(json.loads(message.value))
        finally:
            await consumer.stop()

    def take(self, record: dict[str, object]) -> None:
        if record.get("kind") == "routed":
            self.routed.add(str(record["event_id"]))
        elif record.get("kind") == "outcome" and record.get("final"):
            self.terminal.add(str(record["command_id"]))
            self.statuses[str(record["status"])] += 1


async def run(args: argparse.Namespace) -> bool:
    prefix = f"chaos-{uuid.uuid4().hex[:8]}"
    directory = Path(tempfile.mkdtemp(prefix="postee-chaos-"))
    async with http_sink() as sink:
        worker = Worker(
            args.bootstrap, prefix, write_config(directory, sink), directory / "worker.log"
        )
        worker.start()
        await wait_for_topics(args.bootstrap, prefix)
        started = time.monotonic()
        ids = await produce(args.bootstrap, prefix, args.events)
        expected = {
            records.command_id(i, ROUTE, a, position=at): a
            for i, at in ids.items()
            for a in ACTIONS
        }
        progress, stop = Progress(), asyncio.Event()
        follower = asyncio.create_task(progress.follow(args.bootstrap, prefix, stop))
        faults = await inject(args, worker, progress, len(expected))
        deadline = time.monotonic() + args.deadline
        while len(progress.terminal & expected.keys()) < len(expected) or len(
            progress.routed
        ) < len(ids):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)  # poll the follower's counts, bounded by the deadline
        elapsed = time.monotonic() - started
        stop.set()
        await follower
        exit_code = await worker.signal(signal.SIGTERM)
    shipped = Counter(r.headers.get("Idempotency-Key", "") for r in sink.on("/ship"))
    logged = Counter((directory / "exec.log").read_text().split())
    return report(args, ids, expected, progress, shipped, logged, faults, elapsed, exit_code)


async def inject(
    args: argparse.Namespace, worker: Worker, progress: Progress, commands: int
) -> list[str]:
    """Faults at random moments while commands are still being worked on."""
    faults = []
    rng = random.Random(args.seed)
    for n in range(args.faults):
        target = commands * (n + 1) / (args.faults + 1) * rng.uniform(0.6, 1.0)
        while len(progress.terminal) < target:  # noqa: ASYNC110 - a count, not an event
            await asyncio.sleep(0.05)  # wait for the run to reach the fault's moment
        at = len(progress.terminal)
        if args.mode == "kill":
            await worker.signal(signal.SIGKILL)
            worker.start()
        elif args.mode == "sigterm":
            code = await worker.signal(signal.SIGTERM)
            faults.append(f"SIGTERM at {at} outcomes: exit {code}")
            worker.start()
            continue
        else:
            await kafka("stop")
            during = await post_probe()
            await asyncio.sleep(args.outage_s)  # the outage itself: the broker stays down
            await kafka("start")
            faults.append(f"POST during the outage: HTTP {during}")
        faults.append(f"{args.mode} at {at} terminal outcomes")
    return faults


async def post_probe() -> int:
    """An event posted to the bridge: its status (503 while the broker cannot write)."""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{BRIDGE_PORT}/", json={"probe": True}, timeout=30
        )
        return response.status_code


async def kafka(command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(REPO / "scripts" / "kafka"),
        command,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await process.wait() != 0:
        raise SystemExit(f"scripts/kafka {command} failed")


async def wait_for_topics(bootstrap: str, prefix: str) -> None:
    """Produce only once the worker declared its topics (with their partition counts)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 60
        while f"{prefix}.events" not in await admin.list_topics():
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not declare its topics within 60 s")
            await asyncio.sleep(0.2)  # poll, bounded by the deadline
    finally:
        await admin.close()


def report(args, ids, expected, progress, shipped, logged, faults, elapsed, exit_code) -> bool:  # type: ignore[no-untyped-def]
    http_ids = {c for c, a in expected.items() if a == "ship"}
    exec_ids = {c for c, a in expected.items() if a == "log"}
    checks = {
        "every event routed": len(progress.routed & set(ids)) == len(ids),
        "every command has a terminal outcome": expected.keys() <= progress.terminal,
        "sink saw every http command id": http_ids <= shipped.keys(),
        "exec ran every exec command id": exec_ids <= logged.keys(),
        "worker exits 0 on SIGTERM at the end": exit_code == 0,
    }
    print(
        json.dumps(
            {
                "mode": args.mode,
                "events": len(ids),
                "commands": len(expected),
                "faults": faults,
                "seconds": round(elapsed, 1),
                "outcome_statuses": dict(progress.statuses),
                "http_requests": sum(shipped.values()),
                "http_duplicates": sum(n - 1 for n in shipped.values()),
                "exec_runs": sum(logged.values()),
                "exec_duplicates": sum(n - 1 for n in logged.values()),
                "checks": checks,
            },
            indent=2,
        )
    )
    return all(checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--mode", choices=["kill", "sigterm", "broker"], default="kill")
    parser.add_argument("--faults", type=int, default=3)
    parser.add_argument("--outage-s", type=float, default=5.0)
    parser.add_argument("--deadline", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--bootstrap", default=os.environ.get("POSTEE_KAFKA", "127.0.0.1:9092"))
    ok = asyncio.run(run(parser.parse_args()))
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
