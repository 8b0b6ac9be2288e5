"""POST-to-outcome latency on a warm worker: the README's main job, measured.

Starts `postee run` with examples/cfg-actions.yaml (its own topic prefix and port), waits
until it is healthy, then POSTs Tracee's TRC-2 sample N times, one at a time, and times
each from the POST to its `succeeded` outcome on `<prefix>.outcomes` (the exec action has
appended the event to the forensic log by then). The first event is reported apart: it
pays for connections that later ones reuse.

    .venv/bin/python -m bench.post_to_outcome [--events 20] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "samples" / "tracee" / "trc-2-anti-debugging.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(bootstrap: str, prefix: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "POSTEE_KAFKA": bootstrap,
        "POSTEE_TOPIC_PREFIX": prefix,
        "POSTEE_CFG": str(REPO / "examples" / "cfg-actions.yaml"),
        "POSTEE_HTTP": f"127.0.0.1:{port}",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "streams", "run"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_healthy(url: str, deadline_s: float = 60, path: str = "/healthz") -> None:
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < end:
            try:
                if (await client.get(url + path, timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)  # readiness poll, bounded by the deadline
    raise SystemExit(f"worker not healthy within {deadline_s}s")


async def measure(bootstrap: str, prefix: str, url: str, count: int) -> list[float]:
    consumer = AIOKafkaConsumer(
        f"{prefix}.outcomes",
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    body = SAMPLE.read_bytes()
    latencies = []
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(count):
                started = time.perf_counter()
                event_id = (await client.post("/", content=body)).json()["id"]
                while True:
                    batch = await consumer.getmany(timeout_ms=5000)
                    if not batch:
                        raise SystemExit(f"no outcome for {event_id} within 5 s")
                    values = [json.loads(m.value) for ms in batch.values() for m in ms]
                    if any(
                        v.get("kind") == "outcome" and v["event_id"] == event_id for v in values
                    ):
                        break
                latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await consumer.stop()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--bootstrap", default=os.environ.get("POSTEE_KAFKA", "127.0.0.1:9092"))
    args = parser.parse_args()
    prefix, port = f"bench-latency-{uuid.uuid4().hex[:8]}", free_port()
    worker = start_worker(args.bootstrap, prefix, port)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(wait_healthy(url))
        first, *rest = asyncio.run(measure(args.bootstrap, prefix, url, args.events))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    quantiles = statistics.quantiles(rest, n=10)
    print(
        f"POST → succeeded outcome, examples/cfg-actions.yaml, {args.events} events one at a time"
    )
    print(
        f"  first: {first:.1f} ms; then median {statistics.median(rest):.1f} ms, "
        f"p90 {quantiles[-1]:.1f} ms, min {min(rest):.1f} ms, max {max(rest):.1f} ms"
    )


if __name__ == "__main__":
    main()
