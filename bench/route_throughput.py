"""Router throughput against raw Kafka, in one run on one broker.

1. Baseline: plain aiokafka produces N Tracee events (acks=all, pipelined) to a fresh
   topic, then a fresh consumer reads them all back.
2. Router: for each route count, a cfg.yaml with that many routes (one exec action each,
   never executed), N events pre-produced to `<prefix>.events`, then a worker running only
   the router agent (`bench/router_worker.py`, a subprocess). The clock runs from the first
   to the N-th `routed` record seen on `<prefix>.outcomes`, so worker start-up is excluded.
3. A table (or `--json`), then the worker is stopped with SIGTERM and the run's topics
   are deleted.

    .venv/bin/python -m bench.route_throughput [--events 2000] [--bootstrap HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from rich.console import Console

from bench.harness import (
    Result,
    consume_all,
    cpu_seconds,
    create_topic,
    delete_topics,
    expected_matches,
    print_results,
    produce_all,
    write_config,
)
from streams.settings import TopicSettings

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "samples" / "tracee" / "trc-2-anti-debugging.json"
PARTITIONS = TopicSettings.partitions  # the router's topics get the app's default
STOP_TIMEOUT_S = 60.0

log = Console(stderr=True)


def _unique(value: bytes, n: int) -> list[bytes]:
    """`n` copies of the Tracee event, each with its own `Context.processName`. The 10-
    and 50-route configs read that field, so there no decision is reused (evaluator.py)
    and every event costs a full evaluation; the 1-route config does not read it."""
    event = json.loads(value)
    name = event["Context"]["processName"]
    copies = []
    for i in range(n):
        event["Context"]["processName"] = f"{name}-{i}"
        copies.append(json.dumps(event).encode())
    return copies


async def baseline(
    bootstrap: str, root: str, value: bytes, n: int, timeout_s: float
) -> list[Result]:
    topic = f"{root}-baseline"
    await create_topic(bootstrap, topic, PARTITIONS)
    produce_s = await produce_all(bootstrap, topic, value, n)
    consume_s, _ = await consume_all(bootstrap, topic, n, timeout_s=timeout_s)
    return [
        Result("baseline produce", n, produce_s, n / produce_s),
        Result("baseline consume", n, consume_s, n / consume_s),
    ]


class RoutedChecker:
    """Checks every record on the outcomes topic is a `routed` record with the expected
    number of matched routes (a wrong rule would otherwise make a fast, wrong benchmark)."""

    def __init__(self, expected: int, pid: int) -> None:
        self.expected = expected
        self.bad: list[str] = []
        self.pid = pid
        self.cpu_at_first: tuple[float, float] | None = None

    def __call__(self, messages: list[Any]) -> None:
        if self.cpu_at_first is None:
            self.cpu_at_first = cpu_seconds(self.pid)
        for message in messages:
            record = json.loads(message.value)
            if record.get("kind") != "routed" or len(record.get("routes", ())) != self.expected:
                self.bad.append(message.value.decode()[:300])


async def start_worker(
    cfg: Path, bootstrap: str, prefix: str, log_file: Path, profile: Path | None
) -> asyncio.subprocess.Process:
    command = [
        sys.executable,
        "-m",
        "bench.router_worker",
        str(cfg),
        "--bootstrap",
        bootstrap,
        "--prefix",
        prefix,
    ]
    if profile is not None:
        command += ["--profile", str(profile)]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    with log_file.open("wb") as out:
        # cwd: Faust writes its `<app id>-data` directory there.
        return await asyncio.create_subprocess_exec(
            *command,
            cwd=cfg.parent,
            env=env,
            stdout=out,
            stderr=out,
            stdin=asyncio.subprocess.DEVNULL,
        )


def _tail(log_file: Path) -> str:
    return log_file.read_text(errors="replace")[-3000:]


async def stop_worker(process: asyncio.subprocess.Process, log_file: Path) -> None:
    if process.returncode is None:
        started = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
            log.print(f"[red]worker did not stop within {STOP_TIMEOUT_S:.0f}s; killed[/red]")
            return
        log.print(
            f"  worker stopped in {time.perf_counter() - started:.1f}s (exit {process.returncode})"
        )
    if process.returncode not in (0, -signal.SIGTERM):
        log.print(
            f"[red]worker exited with {process.returncode}[/red]\n{_tail(log_file)}",
            highlight=False,
        )


async def router_case(
    bootstrap: str,
    root: str,
    routes: int,
    value: bytes,
    n: int,
    timeout_s: float,
    workdir: Path,
    profile_dir: Path | None,
    unique: bool,
) -> Result:
    prefix = f"{root}-r{routes}"
    case_dir = workdir / prefix
    case_dir.mkdir()
    cfg = write_config(case_dir, routes)
    events, outcomes = f"{prefix}.events", f"{prefix}.outcomes"
    await create_topic(bootstrap, events, PARTITIONS)
    await create_topic(bootstrap, outcomes, PARTITIONS)
    await produce_all(bootstrap, events, _unique(value, n) if unique else value, n)
    log_file = case_dir / "worker.log"
    profile = profile_dir / f"router-{routes}.prof" if profile_dir else None
    process = await start_worker(cfg, bootstrap, prefix, log_file, profile)
    checker = RoutedChecker(expected_matches(routes), process.pid)
    try:
        _, span_s = await consume_all(
            bootstrap,
            outcomes,
            n,
            timeout_s=timeout_s,
            on_batch=checker,
            is_alive=lambda: process.returncode is None,
        )
        cpu_at_last = cpu_seconds(process.pid)
    except (TimeoutError, RuntimeError):
        log.print(_tail(log_file), highlight=False)
        raise
    finally:
        await stop_worker(process, log_file)
    if checker.bad:
        raise RuntimeError(f"{len(checker.bad)} unexpected outcome records, e.g. {checker.bad[0]}")
    name = f"router {routes} route{'s' * (routes != 1)}"
    assert checker.cpu_at_first is not None
    main_s, children_s = (b - a for a, b in zip(checker.cpu_at_first, cpu_at_last, strict=True))
    per_event_ms = 1000 / (n - 1)
    return Result(
        name,
        n,
        span_s,
        (n - 1) / span_s,
        checker.expected,
        main_s * per_event_ms,
        children_s * per_event_ms,
    )


async def run(args: argparse.Namespace) -> list[Result]:
    value = args.sample.read_bytes()
    root = f"bench-{uuid.uuid4().hex[:8]}"
    log.print(f"run {root}: {args.events} events of {len(value)} bytes, {args.bootstrap}")
    results: list[Result] = []
    try:
        log.print("baseline: raw aiokafka produce/consume")
        results += await baseline(args.bootstrap, root, value, args.events, args.timeout)
        with TemporaryDirectory(prefix="route-bench-") as tmp:
            for routes in args.routes:
                log.print(f"router: {routes} route(s)")
                results.append(
                    await router_case(
                        args.bootstrap,
                        root,
                        routes,
                        value,
                        args.events,
                        args.timeout,
                        Path(tmp),
                        args.profile,
                        args.unique,
                    )
                )
    finally:
        if not args.keep_topics:
            with contextlib.suppress(Exception):  # cleanup must not hide the real error
                deleted = await delete_topics(args.bootstrap, f"{root}-")
                log.print(f"deleted {len(deleted)} topics {root}-*")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", "-n", type=int, default=2000, help="events per case")
    parser.add_argument(
        "--bootstrap",
        "-b",
        help="Kafka bootstrap servers [env POSTEE_KAFKA]",
        default=os.environ.get("POSTEE_KAFKA", "127.0.0.1:9092"),
    )
    parser.add_argument(
        "--routes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 10, 50],
        help="route counts, comma separated (1,10,50)",
    )
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the event to send")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per phase")
    parser.add_argument(
        "--unique",
        action="store_true",
        help="every event its own Context.processName: no decision reuse where routes read it",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep-topics", action="store_true", help="do not delete the topics")
    parser.add_argument("--profile", type=Path, help="directory for cProfile stats of the workers")
    args = parser.parse_args(argv)
    if args.events < 2:
        parser.error("--events must be at least 2")
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    meta = {
        "events": args.events,
        "bootstrap": args.bootstrap,
        "sample": str(args.sample),
        "event_bytes": args.sample.stat().st_size,
        "partitions": PARTITIONS,
        "unique": args.unique,
    }
    print_results(results, args.json, meta)


if __name__ == "__main__":
    main()
