"""UI page and API load times with 100,000 events on the topics.

Fills a fresh topic prefix (4 partitions) with N events spread over the last 23 hours, as
a worker would have left them: per event its record on `<prefix>.events` (Tracee's TRC-2
sample), a `routed` record, an exec command and its outcome; 1 % failed, with a DLQ
record. Then starts `postee ui` on the prefix, times how long its index takes to catch
up, and times each page and API call R times (median, 90th percentile, worst).

    .venv/bin/python -m bench.ui_load [--events 100000] [--repeat 10] [--bootstrap HOST:PORT]
                                      [--max-events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.post_to_outcome import free_port
from streams import records

REPO = Path(__file__).resolve().parent.parent
SAMPLE = json.loads((REPO / "tests/samples/tracee/trc-2-anti-debugging.json").read_text())
TOKEN = "bench-token"
SPAN_MS = 23 * 3600 * 1000
CONFIG = """
routes:
  - {name: tracee, input: input.SigMetadata.ID == "TRC-2", actions: [save]}
actions:
  - {name: save, type: exec, enable: true, exec-script: "true"}
"""


def event_id_at(ms: int) -> str:
    value = (ms & (2**48 - 1)) << 80 | secrets.randbits(80)
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value).hex


async def fill(bootstrap: str, prefix: str, count: int) -> list[str]:
    topics = [
        "events",
        "replay",
        "outcomes",
        "dlq",
        *(f"actions.{k}" for k in ("exec", "http", "docker", "kubernetes")),
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(f"{prefix}.{t}", 4, 1) for t in topics])
    await admin.close()
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    start_ms = int(time.time() * 1000) - SPAN_MS
    ids, pending = [], []
    try:
        for n in range(count):
            at_ms = start_ms + n * SPAN_MS // count
            at = records.iso(datetime.fromtimestamp(at_ms / 1000, UTC))
            event_id = event_id_at(at_ms)
            ids.append(event_id)
            key = event_id.encode()
            event = {**SAMPLE, "title": f"bench event {n}"}
            raw = json.dumps(event).encode()
            command = records.Command(
                records.command_id(event_id, "tracee", "save"),
                event_id,
                "tracee",
                "save",
                "exec",
                "bench",
                event,
                at,
            )
            ref = records.CommandRef(command.command_id, "tracee", "save", "exec")
            routed = records.Routed(event_id, "http", ["tracee"], [ref], at, config_version="bench")
            status = "failed" if n % 100 == 0 else "succeeded"
            outcome = records.Outcome(
                event_id,
                command.command_id,
                "tracee",
                "save",
                "exec",
                status,
                1,
                at,
                at,
                5.0,
                detail={"exit_code": 0 if status == "succeeded" else 1},
            )
            sends = [
                (f"{prefix}.events", raw, records.event_headers(event_id, "http", at)),
                (f"{prefix}.outcomes", routed.to_json(), None),
                (f"{prefix}.actions.exec", command.to_json(), None),
                (f"{prefix}.outcomes", outcome.to_json(), None),
            ]
            if status == "failed":
                dlq = records.DlqRecord.for_bytes(
                    command.to_json(),
                    stage="execute",
                    reason="attempts exhausted: exit 1",
                    event_id=event_id,
                    topic=f"{prefix}.actions.exec",
                    partition=0,
                    offset=0,
                )
                sends.append((f"{prefix}.dlq", dlq.to_json(), None))
            for topic, value, headers in sends:
                pending.append(
                    await producer.send(topic, value, key=key, headers=headers, timestamp_ms=at_ms)
                )
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return ids


def measure(client: httpx.Client, path: str, repeat: int) -> tuple[float, float, float, int]:
    times, size = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - began) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        size = len(response.content)
    times.sort()
    return statistics.median(times), times[int(0.9 * (len(times) - 1))], times[-1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--max-events", type=int, default=20_000, help="POSTEE_UI_MAX_EVENTS")
    parser.add_argument("--bootstrap", default=os.environ.get("POSTEE_KAFKA", "127.0.0.1:9092"))
    args = parser.parse_args()
    prefix = f"bench-ui-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    ids = asyncio.run(fill(args.bootstrap, prefix, args.events))
    print(
        f"filled {prefix}: {args.events} events, {len(ids) * 4 + args.events // 100} records"
        f" in {time.perf_counter() - began:.1f}s"
    )
    config = Path(tempfile.mkdtemp()) / "cfg.yaml"
    config.write_text(CONFIG)
    port = free_port()
    env = {
        **os.environ,
        "POSTEE_KAFKA": args.bootstrap,
        "POSTEE_TOPIC_PREFIX": prefix,
        "POSTEE_CFG": str(config),
        "POSTEE_UI_HTTP": f"127.0.0.1:{port}",
        "POSTEE_UI_TOKEN": TOKEN,
        "POSTEE_UI_MAX_EVENTS": str(args.max_events),
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "ui"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
        ) as client:
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.perf_counter() - started > 600:
                    raise SystemExit("postee ui did not become ready")
                time.sleep(0.2)  # readiness poll
            print(
                f"postee ui ready (index caught up, max {args.max_events} events)"
                f" in {time.perf_counter() - started:.1f}s"
            )
            oldest, middle, newest = ids[0], ids[len(ids) // 2], ids[-1]
            paths = [
                ("events page (HTML shell)", "/"),
                ("events list, 200 newest", "/api/events?since=24h&limit=200"),
                ("events list, status=failed", "/api/events?since=24h&status=failed&limit=200"),
                ("events list, route filter, 500", "/api/events?since=24h&route=tracee&limit=500"),
                ("counts, 24 h", "/api/counts?since=24h"),
                ("DLQ page", "/dlq"),
                ("timeline page, newest event", f"/events/{newest}"),
                ("timeline page, middle event", f"/events/{middle}"),
                ("timeline page, oldest event", f"/events/{oldest}"),
                ("timeline JSON, oldest event", f"/api/events/{oldest}"),
                ("timeline page, 1,000th newest", f"/events/{ids[-1000]}"),
                ("timeline page, oldest, ?full=1", f"/events/{oldest}?full=1"),
            ]
            print(f"{'what':34} {'median ms':>10} {'p90 ms':>8} {'max ms':>8} {'bytes':>9}")
            for label, path in paths:
                median, p90, worst, size = measure(client, path, args.repeat)
                print(f"{label:34} {median:10.1f} {p90:8.1f} {worst:8.1f} {size:9d}")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
