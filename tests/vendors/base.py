"""The frame every vendor server shares: an aiohttp app on 127.0.0.1 that records each
request, lists what broke the vendor's rules (`problems`, which a test expects empty),
and can be told to answer the next requests of a path with given statuses first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: How long a test waits for requests to arrive.
DEADLINE_S = 45.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  #: names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None  #: JSON, or text when a str
    headers: dict[str, str] = field(default_factory=dict)


class VendorServer:
    """Subclasses add their routes in `setup(app)`; handlers call `record` first."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.problems: list[str] = []
        #: Per path, answers to give before the normal handling, in order.
        self.script: dict[str, list[Answer]] = {}
        self.base_url = ""
        self._runner: web.AppRunner | None = None

    def setup(self, app: web.Application) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> VendorServer:
        app = web.Application(middlewares=[self._recorder])
        self.setup(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _recorder(self, request: web.Request, handler: Callable[..., Any]) -> Any:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(
            Received(request.method, request.path, dict(request.query), headers, body)
        )
        planned = self.script.get(request.path)
        if planned:
            return reply(planned.pop(0))
        return await handler(request)

    def refuse(self, problem: str, answer: Answer) -> web.Response:
        """Record a broken rule and answer as the vendor would."""
        self.problems.append(problem)
        return reply(answer)

    def on(self, predicate: Callable[[Received], bool]) -> list[Received]:
        return [r for r in self.requests if predicate(r)]

    async def wait_for(
        self, predicate: Callable[[Received], bool], count: int = 1, deadline_s: float = DEADLINE_S
    ) -> list[Received]:
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while len(self.on(predicate)) < count:
            if loop.time() > end:
                raise AssertionError(
                    f"{type(self).__name__}: {len(self.on(predicate))}/{count} requests"
                    f" in {deadline_s}s; problems: {self.problems}"
                )
            await asyncio.sleep(0.02)  # poll interval, bounded by the deadline above
        return self.on(predicate)


def reply(answer: Answer) -> web.Response:
    if isinstance(answer.body, str) or answer.body is None:
        return web.Response(status=answer.status, text=answer.body or "", headers=answer.headers)
    return web.json_response(answer.body, status=answer.status, headers=answer.headers)


async def json_body(request: web.Request) -> Any:
    """The request's JSON, or None when it is not JSON sent as JSON."""
    if not request.content_type.startswith("application/json"):
        return None
    try:
        return json.loads(await request.read())
    except ValueError:
        return None
