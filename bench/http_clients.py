"""CPU per request of the http action's client, beside bare aiohttp and httpx, in one run.

A local aiohttp server in a child process answers every POST; this process sends N
requests (16 at a time, as the http action's default lanes) with each client and prints
the CPU milliseconds it spent per request and the requests/s. Bare aiohttp is the
baseline; `HttpClient` is actions/httputil.py (what the http action and the notifiers
use); httpx is what they used before.

    .venv/bin/python -m bench.http_clients [--requests 2000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import aiohttp
import httpx

from actions.httputil import HttpClient
from bench.post_to_outcome import free_port, wait_healthy

CONCURRENCY = 16
SERVER = """
import sys
from aiohttp import web

async def answer(request):
    await request.read()
    return web.Response(text="ok")

app = web.Application()
app.router.add_post("/{tail:.*}", answer)
app.router.add_get("/healthz", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@dataclass
class Row:
    client: str
    requests: int
    cpu_ms_per_request: float
    per_s: float


async def measure(name: str, count: int, one: Callable[[int], Awaitable[None]]) -> Row:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def bounded(i: int) -> None:
        async with gate:
            await one(i)

    await asyncio.gather(*(bounded(i) for i in range(50)))  # warm: connections open
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(count)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return Row(name, count, cpu / count * 1000, count / wall)


async def run(count: int) -> list[Row]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])  # noqa: ASYNC220
    url = f"http://127.0.0.1:{port}/hook"
    rows = []
    try:
        await wait_healthy(f"http://127.0.0.1:{port}", deadline_s=30)
        async with aiohttp.ClientSession() as session:

            async def bare(i: int) -> None:
                async with session.post(url, data=str(i).encode()) as response:
                    await response.read()

            rows.append(await measure("aiohttp (baseline)", count, bare))
        ours = HttpClient(16 * 1024)
        try:

            async def exchange(i: int) -> None:
                await ours.exchange("POST", url, headers={}, body=str(i).encode(), timeout_s=5.0)

            rows.append(await measure("HttpClient (the http action's)", count, exchange))
        finally:
            await ours.aclose()
        async with httpx.AsyncClient(trust_env=False) as client:

            async def streamed(i: int) -> None:
                async with client.stream("POST", url, content=str(i).encode()) as response:
                    async for _ in response.aiter_bytes():
                        pass

            rows.append(await measure("httpx (before)", count, streamed))
    finally:
        server.terminate()
        server.wait(timeout=10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = asyncio.run(run(args.requests))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return
    base = rows[0].cpu_ms_per_request
    print(f"{'client':34} {'requests':>8} {'CPU ms/req':>10} {'vs baseline':>11} {'req/s':>8}")
    for r in rows:
        ratio = r.cpu_ms_per_request / base
        print(
            f"{r.client:34} {r.requests:>8} {r.cpu_ms_per_request:>10.3f} {ratio:>11.2f}"
            f" {r.per_s:>8,.0f}"
        )


if __name__ == "__main__":
    main()
