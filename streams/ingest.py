"""The HTTP ingest bridge: Postee's webhook endpoints, producing to `<prefix>.events`.

It validates and produces; it never routes. `202 {"id": ...}` is answered only after the
broker acknowledged the write (acks=all), so an accepted event is never lost; a body that
is not one JSON object gets a 4xx with the reason and nothing is produced.

    POST /  and  POST /scan     an event for every route (upstream's endpoints)
    POST /tenant/{route}        an event for that route only (404 for an unknown route)
    GET  /ping                  liveness (upstream's)
    GET  /healthz               200 when the broker answers, else 503 (kept for compatibility)
    GET  /livez                 200 while the process and its event loop run (answered by the loop)
    GET  /readyz                200 when the broker answers, this worker's consumer has
                                partitions assigned and the config is loaded; else 503
                                naming the failing checks
    GET  /metrics               Prometheus metrics (streams/metrics.py)
    POST /reload                load the config files again (streams/reload.py): 200 when
                                applied, 422 naming the problem when refused (the old
                                config stays). Authenticated like the webhook (bearer
                                token, HMAC signature); with neither set, loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
from typing import Any

from aiohttp import web
from aiokafka.errors import KafkaError
from mode import Service

from streams import metrics, records, tracing
from streams.app import PosteeApp
from streams.errors import EventError
from streams.evaluator import input_refusal
from streams.outcomes import Message
from streams.reload import Reloader

__all__ = ["IngestBridge"]

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 3.0


class IngestBridge(Service):
    """Runs the aiohttp server for the worker's lifetime (registered with
    `app.web_server`, so Faust starts it once the app is ready)."""

    def __init__(
        self,
        app: PosteeApp,
        reloader: Reloader | None = None,
        *,
        ingest: bool = True,
        **kwargs: Any,
    ) -> None:
        """`ingest=False`: only the probes, the metrics and `POST /reload`, on
        `POSTEE_PROBES_HTTP` (a runner, a `--no-ingest` worker)."""
        super().__init__(**kwargs)
        self.app = app
        self.reloader = reloader
        self.ingest = ingest
        self._runner: web.AppRunner | None = None

    def web_app(self) -> web.Application:
        web_app = web.Application(
            client_max_size=self.app.settings.ingest.max_body_bytes,
            middlewares=[self.app.metrics.middleware(), *tracing.middlewares()],
        )
        if self.ingest:
            web_app.add_routes(
                [
                    web.post("/", self.ingest_all),
                    web.post("/scan", self.ingest_all),
                    web.post("/tenant/{route}", self.ingest_tenant),
                ]
            )
        web_app.add_routes(
            [
                web.get("/ping", self.ping),
                web.get("/healthz", self.healthz),
                web.get("/livez", self.livez),
                web.get("/readyz", self.readyz),
                web.get("/metrics", self.metrics),
                web.post("/reload", self.reload),
            ]
        )
        return web_app

    async def on_start(self) -> None:
        settings = self.app.settings.ingest
        self._runner = web.AppRunner(
            self.web_app(), access_log=None, shutdown_timeout=5.0, keepalive_timeout=30.0
        )
        await self._runner.setup()
        if not self.ingest:
            assert settings.probes is not None, "probes only with POSTEE_PROBES_HTTP"
            host, port = settings.probes
            await web.TCPSite(self._runner, host, port).start()
            log.info("probes and metrics on http://%s:%d", host, port)
            return
        await web.TCPSite(self._runner, settings.host, settings.port).start()
        log.info("ingest bridge listening on http://%s:%d", settings.host, settings.port)
        if settings.https and settings.tls_cert and settings.tls_key:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(settings.tls_cert, settings.tls_key)
            host, port = settings.https
            await web.TCPSite(self._runner, host, port, ssl_context=context).start()
            log.info("ingest bridge listening on https://%s:%d", host, port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # --- handlers -----------------------------------------------------------------------

    async def ingest_all(self, request: web.Request) -> web.Response:
        return await self._ingest(request, only_route=None)

    async def ingest_tenant(self, request: web.Request) -> web.Response:
        route = request.match_info["route"]
        if self.app.config.route(route) is None:
            return _error(404, f"no route named '{route}'")
        return await self._ingest(request, only_route=route)

    async def ping(self, request: web.Request) -> web.Response:
        return web.Response(text="pong")

    async def healthz(self, request: web.Request) -> web.Response:
        reachable = await self._broker_reachable()
        status = 200 if reachable else 503
        return web.json_response({"broker": "ok" if reachable else "unreachable"}, status=status)

    async def livez(self, request: web.Request) -> web.Response:
        # This handler runs on the worker's event loop: an answer is the proof. It checks
        # nothing outside the process, so a broker restart never restarts the pod.
        return web.json_response({"status": "alive"})

    async def readyz(self, request: web.Request) -> web.Response:
        checks = {
            "broker": "ok" if await self._broker_reachable() else "unreachable",
            "partitions": "ok" if self._partitions_assigned() else "none assigned",
            "config": "ok" if getattr(self.app, "config", None) is not None else "not loaded",
        }
        failing = sorted(name for name, state in checks.items() if state != "ok")
        body: dict[str, object] = {"status": "ready" if not failing else "not ready", **checks}
        if failing:
            body["failing"] = failing
        return web.json_response(body, status=503 if failing else 200)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.app.metrics.exposition(), headers={"Content-Type": metrics.CONTENT_TYPE}
        )

    async def reload(self, request: web.Request) -> web.Response:
        settings = self.app.settings.ingest
        if not _bearer_ok(request, settings.token):
            return _error(401, "missing or wrong bearer token")
        body = await asyncio.wait_for(request.read(), settings.body_timeout_s)
        if not _signature_ok(request, body, settings.hmac_secret):
            return _error(
                401, "missing or wrong X-Postee-Signature (sha256=<hex HMAC of the body>)"
            )
        if settings.token is None and settings.hmac_secret is None and not _loopback(request):
            return _error(403, "reload needs POSTEE_TOKEN or POSTEE_HMAC_SECRET off loopback")
        if self.reloader is None:
            return _error(503, "this process does not reload")
        result = await self.reloader.reload("POST /reload")
        return web.json_response(result.as_dict(), status=200 if result.applied else 422)

    # --- internals ----------------------------------------------------------------------

    async def _ingest(self, request: web.Request, only_route: str | None) -> web.Response:
        settings = self.app.settings.ingest
        limit = settings.max_body_bytes
        if not _bearer_ok(request, settings.token):
            return _error(401, "missing or wrong bearer token")
        if request.content_length is not None and request.content_length > limit:
            return _error(
                413, f"body of {request.content_length} bytes exceeds the limit of {limit}"
            )
        try:
            raw = await asyncio.wait_for(request.read(), settings.body_timeout_s)
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body exceeds the limit of {limit} bytes")
        except TimeoutError:
            return _error(408, f"body not received within {settings.body_timeout_s:g}s")
        if not _signature_ok(request, raw, settings.hmac_secret):
            return _error(
                401, "missing or wrong X-Postee-Signature (sha256=<hex HMAC of the body>)"
            )
        try:
            payload = records.parse_json_object(raw)
        except EventError as exc:
            return _error(400, exc.reason)
        engine = self.app.settings.engine
        refused = input_refusal(
            payload, engine.max_input_values, engine.max_string_bytes, text_bytes=len(raw)
        )
        if refused is not None:  # the router could only record it as unroutable
            return _error(400, f"the rule engine refuses this event: {refused}")
        event_id = records.new_event_id()
        tracing.note_event(event_id)
        headers = records.event_headers(event_id, "http", records.utc_now(), only_route)
        headers = tracing.inject(headers)  # the request's span: the event's trace
        message = Message(self.app.postee_topics.events, event_id, raw, headers)
        try:
            await asyncio.wait_for(
                self.app.publisher.send(message), self.app.settings.ingest.produce_timeout_s
            )
        except (KafkaError, TimeoutError) as exc:
            log.warning(
                "event %s not accepted, broker did not acknowledge: %r",
                event_id,
                exc,
                extra={"event_id": event_id},
            )
            return _error(503, "the broker did not acknowledge the event; retry later")
        return web.json_response({"id": event_id}, status=202)

    def _partitions_assigned(self) -> bool:
        try:
            return bool(self.app.consumer.assignment())
        except Exception:  # no consumer yet: not ready
            return False

    async def _broker_reachable(self) -> bool:
        try:
            producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                metadata = await producer.client.fetch_all_metadata()
            return bool(metadata.brokers())
        except Exception:  # any failure means "not reachable" for a health probe
            return False


def _bearer_ok(request: web.Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    # Constant time, so the comparison does not leak how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode(), token.encode()
    )


def _loopback(request: web.Request) -> bool:
    peer = request.remote or ""
    return peer == "::1" or peer.startswith("127.")


def _signature_ok(request: web.Request, body: bytes, secret: str | None) -> bool:
    if secret is None:
        return True
    given = request.headers.get("X-Postee-Signature", "")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.strip().lower().encode(), expected.encode())


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)
