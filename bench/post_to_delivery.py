"""POST-to-delivery throughput and latency of one worker, beside raw aiokafka on the broker.

Starts one `postee run` (its own topic prefix and port) with four routes, each with one
action, and a local HTTP sink in this process, then measures in one run:

1. raw aiokafka: produce N records of the event's size (acks=all) and consume them back;
2. **fast**: N events POSTed as fast as the client goes (64 in flight) to a route with
   one http action to the sink: events/s from the first POST to the last delivery at the
   sink, and the delivery latency (POST sent to request received) percentiles;
3. **paced**: the same at a fixed rate (default 100 events/s), latency percentiles;
4. **exec**: N events produced straight to `<prefix>.events` (no HTTP) to a route with
   an exec action (`true`): commands/s, first produce to last outcome;
5. **slow neighbour**: the fast case again while another http action of the same worker
   (the same command topic) gets events whose target takes 5 s each: the fast action's
   events/s beside case 2.

    .venv/bin/python -m bench.post_to_delivery [--events 5000] [--rate 100] [--json]

`--workers N` starts N worker processes of one consumer group (the first runs the
bridge, the others `--no-ingest`), to see how the load spreads over the cores.
Run with `--profile DIR` to record the worker with py-spy (`PYSPY` names its binary).
The worker takes its settings from the environment: `POSTEE_PARTITIONS=1` measures a
single-worker deployment, whose hops are faster for consuming fewer partitions (README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench import harness
from bench.post_to_outcome import free_port, wait_healthy

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "samples" / "tracee" / "trc-2-anti-debugging.json"
IN_FLIGHT = 64
SLOW_S = 5.0


@dataclass
class Row:
    case: str
    count: int
    seconds: float
    per_s: float
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


class Sink:
    """Records when each event's request arrived; `/slow` answers after SLOW_S."""

    def __init__(self) -> None:
        self.arrived: dict[str, dict[int, float]] = {"fast": {}, "slow": {}}
        self.waiters: list[tuple[str, int, asyncio.Future[None]]] = []
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{kind}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        n = int((await request.read()).decode())
        self.arrived[kind].setdefault(n, time.perf_counter())
        if kind == "slow":
            await asyncio.sleep(SLOW_S)  # the slow target itself
        for waiter in [w for w in self.waiters if w[0] == kind and len(self.arrived[kind]) >= w[1]]:
            self.waiters.remove(waiter)
            if not waiter[2].done():
                waiter[2].set_result(None)
        return web.Response(text="ok")

    async def wait(self, kind: str, count: int, timeout_s: float) -> None:
        if len(self.arrived[kind]) >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((kind, count, future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            got = len(self.arrived[kind])
            raise SystemExit(f"{kind}: {got}/{count} deliveries within {timeout_s:.0f}s") from None


def write_config(directory: Path, sink_url: str) -> Path:
    def http(name: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": "http",
            "enable": True,
            "url": f"{sink_url}/{path}",
            "body-content": "event.input.n",
            "timeout": "30s",
        }

    config = {
        "routes": [
            {"name": "fast", "input": 'input.bench == "fast"', "actions": ["post-fast"]},
            {"name": "slow", "input": 'input.bench == "slow"', "actions": ["post-slow"]},
            {"name": "exec", "input": 'input.bench == "exec"', "actions": ["run-true"]},
        ],
        "actions": [
            http("post-fast", "fast"),
            http("post-slow", "slow"),
            {"name": "run-true", "type": "exec", "enable": True, "exec-script": "true"},
        ],
    }
    path = directory / "cfg-delivery.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def body(kind: str, n: int) -> bytes:
    event = json.loads(SAMPLE.read_text())
    event["bench"], event["n"] = kind, n
    return json.dumps(event).encode()


def percentiles(latencies_ms: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(latencies_ms, n=100)
    return statistics.median(latencies_ms), q[89], q[98]


async def post_many(
    url: str, kind: str, numbers: range, rate: float | None = None
) -> dict[int, float]:
    """POST one event per number; when each POST was sent (perf_counter)."""
    sent: dict[int, float] = {}
    gate = asyncio.Semaphore(IN_FLIGHT)
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT)
    bodies = {n: body(kind, n) for n in numbers}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int) -> None:
            async with gate:
                sent[n] = time.perf_counter()
                async with session.post(url + "/", data=bodies[n]) as response:
                    if response.status != 202:
                        raise SystemExit(f"POST answered {response.status}")

        if rate is None:
            await asyncio.gather(*(one(n) for n in numbers))
            return sent
        start, tasks = time.perf_counter(), []
        for i, n in enumerate(numbers):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # the load generator's fixed rate
            tasks.append(asyncio.ensure_future(one(n)))
        await asyncio.gather(*tasks)
    return sent


async def delivery_case(
    sink: Sink, url: str, name: str, numbers: range, rate: float | None = None
) -> Row:
    base = len(sink.arrived["fast"])
    sent = await post_many(url, "fast", numbers, rate)
    await sink.wait("fast", base + len(numbers), timeout_s=120 + len(numbers) / 100)
    arrived = sink.arrived["fast"]
    latencies = [(arrived[n] - sent[n]) * 1000 for n in numbers]
    seconds = max(arrived[n] for n in numbers) - min(sent.values())
    p50, p90, p99 = percentiles(latencies)
    return Row(name, len(numbers), seconds, len(numbers) / seconds, p50, p90, p99)


async def exec_case(bootstrap: str, prefix: str, count: int) -> Row:
    consumer = AIOKafkaConsumer(
        f"{prefix}.outcomes", bootstrap_servers=bootstrap, group_id=None,
        auto_offset_reset="latest",
    )  # fmt: skip
    await consumer.start()
    await consumer.getmany(timeout_ms=500)  # positioned at the end before producing
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        start = time.perf_counter()
        acks = [
            await producer.send(f"{prefix}.events", body("exec", n), key=str(n).encode())
            for n in range(count)
        ]
        await asyncio.gather(*acks)
        seen, end = 0, start
        deadline = time.monotonic() + 120 + count / 50
        while seen < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"exec: {seen}/{count} outcomes")
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for r in records:
                    v = json.loads(r.value)
                    if v.get("kind") == "outcome" and v.get("action") == "run-true":
                        seen += 1
                        end = time.perf_counter()
        return Row("exec commands (produce → outcome)", count, end - start, count / (end - start))
    finally:
        await producer.stop()
        await consumer.stop()


async def raw_kafka(bootstrap: str, prefix: str, count: int) -> list[Row]:
    topic = f"{prefix}.raw"
    await harness.create_topic(bootstrap, topic, 4)
    value = body("raw", 0)
    produce_s = await harness.produce_all(bootstrap, topic, value, count)
    consume_s, _ = await harness.consume_all(bootstrap, topic, count, timeout_s=120)
    return [
        Row("raw aiokafka produce (acks=all)", count, produce_s, count / produce_s),
        Row("raw aiokafka consume", count, consume_s, count / consume_s),
    ]


async def run(args: argparse.Namespace) -> tuple[list[Row], dict[str, Any]]:
    prefix, port = f"bench-delivery-{uuid.uuid4().hex[:8]}", free_port()
    sink = Sink()
    await sink.start()
    workdir = Path(tempfile.mkdtemp(prefix="postee-bench-"))
    config = write_config(workdir, sink.base_url)
    env = {
        **os.environ,
        "POSTEE_KAFKA": args.bootstrap,
        "POSTEE_TOPIC_PREFIX": prefix,
        "POSTEE_CFG": str(config),
        "POSTEE_HTTP": f"127.0.0.1:{port}",
    }
    worker = start_worker(args.worker_repo, env)
    # More workers of the same group (`--workers`): no bridge, probes on a port of their own.
    probes = [free_port() for _ in range(args.workers - 1)]
    others = [
        start_worker(
            args.worker_repo, env | {"POSTEE_PROBES_HTTP": f"127.0.0.1:{p}"}, "--no-ingest"
        )
        for p in probes
    ]
    url = f"http://127.0.0.1:{port}"
    spy: subprocess.Popen[bytes] | None = None
    rows: list[Row] = []
    try:
        for p in [port, *probes]:  # every member has joined the group and holds partitions
            await wait_healthy(f"http://127.0.0.1:{p}", deadline_s=120, path="/readyz")
        rows += await raw_kafka(args.bootstrap, prefix, args.events)
        n = args.events
        await delivery_case(sink, url, "warm-up", range(10**6, 10**6 + 200))
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            out = args.profile / "worker.speedscope.json"
            spy = subprocess.Popen(  # noqa: ASYNC220 - outside the timed window
                [os.environ.get("PYSPY", "py-spy"), "record", "-p", str(worker.pid),
                 "-o", str(out), "-f", "speedscope", "-r", "200", "--subprocesses"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        fast = await delivery_case(sink, url, "http, as fast as possible", range(n))
        rows.append(fast)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        paced_n = int(args.rate * args.paced_s)
        rows.append(
            await delivery_case(
                sink, url, f"http at {args.rate:g} events/s", range(n, n + paced_n), args.rate
            )
        )
        rows.append(await exec_case(args.bootstrap, prefix, args.exec_commands))
        # The slow neighbour: its events first, so its lane is full when the fast ones come.
        slow_n = args.slow_events
        slow_url = url
        await post_many(slow_url, "slow", range(slow_n))
        base = n + paced_n
        neighbour = await delivery_case(
            sink, url, "http beside a 5 s target", range(base, base + n)
        )
        neighbour.note = f"{neighbour.per_s / fast.per_s:.2f} of alone; {slow_n} slow events"
        rows.append(neighbour)
        slow_done = len(sink.arrived["slow"])
        rows.append(Row("the 5 s target meanwhile", slow_done, neighbour.seconds, 0.0,
                        note="requests started (concurrency 16)"))  # fmt: skip
    finally:
        for process in [worker, *others]:
            process.send_signal(signal.SIGTERM)
        for process in [worker, *others]:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        await sink.stop()
        await harness.delete_topics(args.bootstrap, prefix)
    meta = {
        "bootstrap": args.bootstrap,
        "events": args.events,
        "cores": os.cpu_count(),
        "workers": args.workers,
    }
    return rows, meta


def start_worker(repo: Path, env: dict[str, str], *options: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "streams", "run", *options]
    return subprocess.Popen(  # started before the timed cases
        command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def show(rows: list[Row], meta: dict[str, Any], as_json: bool) -> None:
    consume = next(r for r in rows if r.case == "raw aiokafka consume")
    if as_json:
        print(json.dumps(meta | {"rows": [asdict(r) for r in rows]}, indent=2))
        return
    workers = "one worker" if meta["workers"] == 1 else f"{meta['workers']} workers"
    print(f"post → delivery, {workers}, {meta['cores']} cores, broker {meta['bootstrap']}")
    header = f"{'case':40} {'count':>6} {'s':>7} {'per s':>8} {'vs consume':>10} "
    print(header + f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7}  note")
    for r in rows:
        ratio = f"{r.per_s / consume.per_s:.3f}" if r.per_s else "-"
        lat = "".join(
            f"{v:>8.1f}" if v is not None else f"{'-':>8}" for v in (r.p50_ms, r.p90_ms, r.p99_ms)
        )
        line = f"{r.case:40} {r.count:>6} {r.seconds:>7.2f} {r.per_s:>8,.0f} {ratio:>10}"
        print(f"{line}{lat}  {r.note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--paced-s", type=float, default=10.0)
    parser.add_argument("--exec-commands", type=int, default=2000)
    parser.add_argument("--slow-events", type=int, default=200)
    parser.add_argument("--bootstrap", default=os.environ.get("POSTEE_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--profile", type=Path, default=None)
    # Worker processes of one group (the first runs the bridge): how the load spreads.
    parser.add_argument("--workers", type=int, default=1)
    # Another checkout's worker (e.g. `git archive` of an older commit), for before/after.
    parser.add_argument("--worker-repo", type=Path, default=REPO)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows, meta = asyncio.run(run(args))
    show(rows, meta, args.json)


if __name__ == "__main__":
    main()
