"""A real HTTP server on 127.0.0.1 that records requests and answers from a script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Sink:
    base_url: str
    requests: list[Seen] = field(default_factory=list)
    #: Per path, the statuses to answer in turn (then 200); a float means "stall that long".
    script: dict[str, list[int | float]] = field(default_factory=dict)
    extra_headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def on(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    async def wait_for(self, path: str, count: int = 1, deadline_s: float = 45.0) -> list[Seen]:
        end = asyncio.get_running_loop().time() + deadline_s
        while len(self.on(path)) < count:
            if asyncio.get_running_loop().time() > end:
                raise AssertionError(
                    f"{path}: {len(self.on(path))}/{count} requests in {deadline_s}s"
                )
            await asyncio.sleep(0.02)  # poll interval, bounded by the deadline above
        return self.on(path)


@asynccontextmanager
async def http_sink() -> AsyncIterator[Sink]:
    sink = Sink(base_url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        # A header sent several times is kept as one comma-joined value.
        headers = {k: ", ".join(request.headers.getall(k)) for k in set(request.headers.keys())}
        sink.requests.append(
            Seen(request.method, request.path, request.query_string, headers, body)
        )
        plan = sink.script.get(request.path) or []
        answer = plan.pop(0) if plan else 200
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            answer = 200
        return web.Response(
            status=answer, text=f"answer {answer}", headers=sink.extra_headers.get(request.path, {})
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sink.base_url = f"http://127.0.0.1:{port}"
    try:
        yield sink
    finally:
        await runner.cleanup()
