"""The UI's routes.

GET  /                      the live list of events, with filters and counts
GET  /events/{id}           the timeline of one event (read from the topics)
GET  /dlq                   the DLQ, with a redrive button per record
GET  /replay                the replay form
GET  /api/events            rows of the index: ?route= &action= &status= &since= &until=
                            &ids=a,b &limit=  (newest first)
GET  /api/counts            per route, action and status, same filters
GET  /api/stream            server-sent events: `rows` (changed rows), `reload`
GET  /api/events/{id}       the timeline as JSON
GET  /api/dlq               the DLQ entries of the index
POST /api/dlq/redrive       {"partition", "offset"} of a DLQ record
POST /api/replays           {"from", "to", "route", "execute"}; GET /api/replays[/{id}]
GET  /healthz               200 once the index caught up with the topics
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from streams import records, timeline
from streams.config import PosteeConfig
from streams.settings import Settings
from streams.timeparse import parse_time
from streams.ui import pages
from streams.ui.auth import COOKIE
from streams.ui.feed import Feed
from streams.ui.index import Index, Query
from streams.ui.operations import RedriveError, Redriver, ReplayJobs

__all__ = ["UI_KEY", "Ui", "routes"]

MAX_ROWS = 500
DLQ_PAGE_ROWS = 500
#: How far past its arrival the timeline of an event the index does not hold is read.
HORIZON = timedelta(hours=1)
KEEPALIVE_S = 15.0


@dataclass
class Ui:
    settings: Settings
    config: PosteeConfig
    index: Index
    feed: Feed
    redriver: Redriver
    jobs: ReplayJobs


UI_KEY = web.AppKey("ui", Ui)


def _ui(request: web.Request) -> Ui:
    return request.app[UI_KEY]


def _signed_in(request: web.Request) -> bool:
    return COOKIE in request.cookies


def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html")


def _bad(reason: str, status: int = 400) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _query(request: web.Request) -> Query:
    """Raises ValueError (answered 400) for a time that does not parse."""
    q = request.query
    since, until = q.get("since", ""), q.get("until", "")
    ids = q.get("ids", "")
    return Query(
        route=q.get("route") or None,
        action=q.get("action") or None,
        status=q.get("status") or None,
        since_ms=int(parse_time(since).timestamp() * 1000) if since else 0,
        until_ms=int(parse_time(until).timestamp() * 1000) if until else None,
        ids=frozenset(ids.split(",")) if ids else None,
    )


# --- pages ------------------------------------------------------------------------------


async def events_page(request: web.Request) -> web.Response:
    ui = _ui(request)
    return _html(pages.events_page(ui.config, ui.settings.topics.prefix, _signed_in(request)))


async def _timeline(request: web.Request) -> tuple[str, list[timeline.Entry], datetime | None]:
    """The event's records, and the time the read stopped at when it did not read each
    partition to its end (an event the index does not hold: HORIZON after its arrival)."""
    ui, event_id = _ui(request), request.match_info["event_id"]
    row, born = ui.index.rows.get(event_id), records.event_time(event_id)
    until = cut = None
    if request.query.get("full") == "1" or (row is None and born is None):
        pass  # read every partition to its end
    elif row is not None and ui.feed.caught_up.is_set():
        until = datetime.fromtimestamp(row.last_ms / 1000, UTC)  # complete: see event_timeline
    elif born is not None:
        until = cut = born + HORIZON
    return event_id, await timeline.event_timeline(ui.settings, event_id, until), cut


async def timeline_page(request: web.Request) -> web.Response:
    event_id, entries, cut = await _timeline(request)
    prefix = _ui(request).settings.topics.prefix
    page = pages.timeline_page(event_id, entries, prefix, _signed_in(request), cut)
    return web.Response(text=page, content_type="text/html", status=200 if entries else 404)


async def dlq_page(request: web.Request) -> web.Response:
    ui = _ui(request)
    entries = itertools.islice(reversed(ui.index.dlq), DLQ_PAGE_ROWS)
    return _html(pages.dlq_page(entries, ui.settings.topics.prefix, _signed_in(request)))


async def replay_page(request: web.Request) -> web.Response:
    ui = _ui(request)
    return _html(pages.replay_page(ui.config, ui.settings.topics.prefix, _signed_in(request)))


# --- reading ------------------------------------------------------------------------------


async def events_api(request: web.Request) -> web.Response:
    ui = _ui(request)
    try:
        query = _query(request)
        limit = min(int(request.query.get("limit", "200")), MAX_ROWS)
    except ValueError as exc:
        return _bad(str(exc))
    rows = [r.as_dict() for r in ui.index.select(query, limit)]
    return web.json_response({"rows": rows, "caught_up": ui.feed.caught_up.is_set()})


async def counts_api(request: web.Request) -> web.Response:
    try:
        query = _query(request)
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response(_ui(request).index.counts(query))


async def timeline_api(request: web.Request) -> web.Response:
    """`read_until`: set when records written after it were not read (`?full=1` reads all)."""
    _, entries, cut = await _timeline(request)
    body = {"entries": [e.as_dict() for e in entries], "read_until": cut and records.iso(cut)}
    return web.json_response(body, status=200 if entries else 404)


async def dlq_api(request: web.Request) -> web.Response:
    return web.json_response({"entries": [e.as_dict() for e in reversed(_ui(request).index.dlq)]})


async def stream_api(request: web.Request) -> web.StreamResponse:
    """Changed rows as they come: `event: rows` with the rows that match the filters and
    the ids of changed rows that no longer do; `event: reload` when the page fell behind."""
    ui = _ui(request)
    try:
        query = _query(request)
    except ValueError as exc:
        return _bad(str(exc))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue = ui.feed.subscribe()
    try:
        await response.write(b"retry: 2000\nevent: hello\ndata: {}\n\n")
        while True:
            try:
                changed = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if changed is None:
                await response.write(b"event: reload\ndata: {}\n\n")
                break
            rows, gone = [], []
            for event_id in changed:
                row = ui.index.rows.get(event_id)
                if row is not None and query.selects(row):
                    rows.append(row.as_dict())
                elif query.ids is None or event_id in query.ids:
                    gone.append(event_id)
            if rows or gone:
                data = json.dumps({"rows": rows, "gone": gone}, ensure_ascii=False)
                await response.write(f"event: rows\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        ui.feed.unsubscribe(queue)
    return response


async def healthz(request: web.Request) -> web.Response:
    ready = _ui(request).feed.caught_up.is_set()
    return web.json_response(
        {"index": "ready" if ready else "loading"}, status=200 if ready else 503
    )


# --- changing -----------------------------------------------------------------------------


async def _json_body(request: web.Request) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        body = await request.json()
        if isinstance(body, dict):
            return body
    raise web.HTTPBadRequest(
        text='{"error": "expected a JSON object"}', content_type="application/json"
    )


async def redrive_api(request: web.Request) -> web.Response:
    body = await _json_body(request)
    partition, offset = body.get("partition"), body.get("offset")
    if not isinstance(partition, int) or not isinstance(offset, int):
        return _bad("give the DLQ record's partition and offset as integers")
    try:
        redriven = await _ui(request).redriver.redrive(partition, offset)
    except RedriveError as exc:
        return _bad(str(exc), 409)
    return web.json_response(redriven.to_dict(), status=201)


async def start_replay_api(request: web.Request) -> web.Response:
    ui, body = _ui(request), await _json_body(request)
    try:
        start = parse_time(str(body.get("from") or ""))
        end = parse_time(str(body.get("to") or "now"))
        route = str(body["route"]) if body.get("route") else None
        job = ui.jobs.start(start, end, route, execute=body.get("execute") is True)
    except ValueError as exc:
        return _bad(str(exc))
    return web.json_response(job.as_dict(ui.index), status=202)


async def replays_api(request: web.Request) -> web.Response:
    ui = _ui(request)
    jobs = [j.as_dict(ui.index) for j in reversed(ui.jobs.jobs.values())]
    return web.json_response({"jobs": jobs})


async def replay_api(request: web.Request) -> web.Response:
    ui = _ui(request)
    job = ui.jobs.jobs.get(request.match_info["job_id"])
    if job is None:
        return _bad("no such replay", 404)
    return web.json_response(job.as_dict(ui.index))


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", events_page),
        web.get("/events/{event_id}", timeline_page),
        web.get("/dlq", dlq_page),
        web.get("/replay", replay_page),
        web.get("/api/events", events_api),
        web.get("/api/counts", counts_api),
        web.get("/api/stream", stream_api),
        web.get("/api/events/{event_id}", timeline_api),
        web.get("/api/dlq", dlq_api),
        web.post("/api/dlq/redrive", redrive_api),
        web.post("/api/replays", start_replay_api),
        web.get("/api/replays", replays_api),
        web.get("/api/replays/{job_id}", replay_api),
        web.get("/healthz", healthz),
    ]
