"""The `postee ui` process: an aiohttp server beside (never inside) the worker.

A separate process, so the worker's event loop never serves UI traffic, and the UI can be
scaled, restarted and secured on its own. It reads the topics with plain aiokafka clients
(the index feed, timeline seeks) and produces only redriven records and replays.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web
from aiokafka import AIOKafkaProducer

from streams.config import PosteeConfig
from streams.errors import ConfigError
from streams.settings import Settings, UiSettings
from streams.ui import auth, pages, views
from streams.ui.feed import Feed
from streams.ui.index import Index
from streams.ui.operations import Redriver, ReplayJobs

__all__ = ["check_exposure", "create_app", "run"]

STATIC = Path(__file__).resolve().parent / "static"
#: No inline script or style, nothing from another origin, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def check_exposure(settings: UiSettings) -> None:
    """Never open by default: off loopback, a token is required."""
    if settings.token is None and not settings.loopback:
        raise ConfigError(
            f"the UI would listen on {settings.host} without authentication:"
            " set POSTEE_UI_TOKEN, or listen on 127.0.0.1",
            key="POSTEE_UI_TOKEN",
        )


@web.middleware
async def security_headers(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(settings: Settings, config: PosteeConfig) -> web.Application:
    app = web.Application(
        middlewares=[security_headers, auth.middleware(pages.login_page)],
        client_max_size=64 * 1024,
    )
    auth.configure(app, settings.ui)
    app.add_routes(auth.routes(pages.login_page))
    app.add_routes(views.routes())
    app.router.add_static("/static/", STATIC, append_version=False)
    app.cleanup_ctx.append(_clients(settings, config))
    return app


def _clients(
    settings: Settings, config: PosteeConfig
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def clients(app: web.Application) -> AsyncIterator[None]:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
        )
        index = Index(settings.ui.window_s, settings.ui.max_events)
        feed = Feed(settings, index)
        jobs = ReplayJobs(settings, config)
        await producer.start()
        await feed.start()
        app[views.UI_KEY] = views.Ui(
            settings, config, index, feed, Redriver(settings, producer), jobs
        )
        try:
            yield
        finally:
            await jobs.stop()
            await feed.stop()
            await producer.stop()

    return clients


def run(settings: Settings, config: PosteeConfig) -> None:
    ui = settings.ui
    context = None
    if ui.tls_cert is not None and ui.tls_key is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ui.tls_cert, ui.tls_key)
    scheme = "https" if context else "http"
    web.run_app(
        create_app(settings, config),
        host=ui.host,
        port=ui.port,
        ssl_context=context,
        access_log=None,
        shutdown_timeout=2.0,
        print=lambda _: print(f"postee ui on {scheme}://{ui.host}:{ui.port}", flush=True),
    )
