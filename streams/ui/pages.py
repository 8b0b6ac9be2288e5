"""Server-rendered HTML. Every value from a record goes through `h()` (HTML-escaped):
event content is shown as text, never as markup. Templates are files beside this module
(`string.Template`); what they receive is already escaped, or HTML built here from escaped
parts. The pages load no inline script (the Content-Security-Policy forbids it)."""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from streams.config import PosteeConfig
from streams.timeline import Entry, describe
from streams.ui.index import STATUSES, DlqEntry

__all__ = ["dlq_page", "events_page", "login_page", "replay_page", "timeline_page"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
WINDOWS = (
    ("15m", "last 15 minutes"),
    ("1h", "last hour"),
    ("6h", "last 6 hours"),
    ("24h", "last 24 hours"),
)


def h(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / f"{name}.html").read_text(encoding="utf-8"))


def _layout(title: str, page: str, body: str, prefix: str, signed_in: bool) -> str:
    logout = (
        '<form method="post" action="/logout" class="logout"><button>Sign out</button></form>'
        if signed_in
        else ""
    )
    return _template("layout").substitute(
        title=h(title), page=h(page), body=body, prefix=h(prefix), logout=logout
    )


def _options(values: Iterable[str]) -> str:
    return "".join(f'<option value="{h(v)}">{h(v)}</option>' for v in values)


def login_page(next_path: str, error: str) -> str:
    body = _template("login").substitute(next=h(next_path), error=h(error))
    return _layout("Sign in", "login", body, "", signed_in=False)


def events_page(config: PosteeConfig, prefix: str, signed_in: bool) -> str:
    body = _template("events").substitute(
        routes=_options(r.name for r in config.routes),
        actions=_options(config.actions),
        statuses=_options(STATUSES),
        windows="".join(
            f'<option value="{v}"{" selected" if v == "1h" else ""}>{h(label)}</option>'
            for v, label in WINDOWS
        ),
    )
    return _layout("Events", "events", body, prefix, signed_in)


def replay_page(config: PosteeConfig, prefix: str, signed_in: bool) -> str:
    body = _template("replay").substitute(routes=_options(r.name for r in config.routes))
    return _layout("Replay", "replay", body, prefix, signed_in)


def _pretty(value: Any) -> str:
    return h(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False))


def timeline_page(
    event_id: str,
    entries: Sequence[Entry],
    prefix: str,
    signed_in: bool,
    cut: datetime | None = None,
) -> str:
    more = ""
    if cut is not None:
        more = (
            f'<p class="note">Read up to {h(cut.isoformat(timespec="seconds"))} (an hour after'
            " its arrival; the event is older than the UI's index). Later records, such as a"
            f' replay, may exist: <a href="/events/{h(event_id)}?full=1">read the topics to'
            " their end</a>.</p>"
        )
    if not entries:
        body = (
            f"<h1>Event <code>{h(event_id)}</code></h1>"
            f'<p class="error">No record of this event on the {h(prefix)}.* topics.</p>' + more
        )
        return _layout("Event", "timeline", body, prefix, signed_in)
    arrival = next((e for e in entries if e.kind in ("received", "replayed")), None)
    routed = next((e for e in entries if e.kind == "routed"), None)
    routed_value = routed.value if routed and isinstance(routed.value, dict) else {}
    facts = {
        "Arrived": arrival.at.isoformat(timespec="milliseconds")
        if arrival
        else "not on the topics",
        "Source": arrival.headers.get("postee-source", "kafka") if arrival else "",
        "Stored at": f"{arrival.topic}[{arrival.partition}]@{arrival.offset}" if arrival else "",
        "Routes": ", ".join(routed_value.get("routes", [])) or "none matched",
        "Config version": routed_value.get("config_version") or "not recorded",
    }
    rows = "".join(_entry_row(e) for e in entries)
    raw = _raw_event(entries, arrival)
    body = (
        f"<h1>Event <code>{h(event_id)}</code></h1>"
        + more
        + '<dl class="facts">'
        + "".join(f"<dt>{h(k)}</dt><dd>{h(v)}</dd>" for k, v in facts.items())
        + "</dl>"
        '<table class="timeline"><thead><tr><th>Time</th><th>What</th><th>Details</th></tr>'
        f"</thead><tbody>{rows}</tbody></table>"
        '<details class="raw" open><summary>Raw event</summary>'
        f'<pre class="json tree" id="raw-event">{_pretty(raw)}</pre></details>'
    )
    return _layout("Event", "timeline", body, prefix, signed_in)


def _entry_row(entry: Entry) -> str:
    value = entry.value if isinstance(entry.value, dict) else {}
    status = (
        f" status-{h(value['status'])}" if entry.kind == "outcome" and "status" in value else ""
    )
    record = {"headers": entry.headers, "value": entry.value} if entry.headers else entry.value
    if entry.kind == "received":  # the event itself is below, as a tree
        record = {"headers": entry.headers, "value": "(the raw event, below)"}
    shown = _pretty(record)
    return (
        f'<tr class="kind-{h(entry.kind)}{status}">'
        f'<td class="time">{h(entry.at.isoformat(timespec="milliseconds"))}</td>'
        f"<td>{h(entry.kind)}</td><td>{h(describe(entry))}"
        f"<details><summary>record {h(entry.topic)}[{entry.partition}]@{entry.offset}</summary>"
        f'<pre class="json">{shown}</pre></details></td></tr>'
    )


def _raw_event(entries: Sequence[Entry], arrival: Entry | None) -> Any:
    if arrival is not None:
        return arrival.value
    command = next((e for e in entries if e.kind == "command"), None)
    if command is not None and isinstance(command.value, dict):
        return command.value.get("event")
    return None


def dlq_page(entries: Iterable[DlqEntry], prefix: str, signed_in: bool) -> str:
    rows = "".join(_dlq_row(e.as_dict()) for e in entries)
    body = (
        "<h1>Dead-letter queue</h1>"
        '<p class="muted">Records that could not be processed, newest first. Redrive puts a '
        "record back on its source topic (recorded as a <code>redriven</code> outcome).</p>"
        '<table class="dlq"><thead><tr><th>Time</th><th>Stage</th><th>Reason</th>'
        "<th>Source</th><th>Event</th><th>Event state</th><th>Redriven</th><th></th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
        + ("" if rows else '<p class="muted">The DLQ is empty.</p>')
    )
    return _layout("DLQ", "dlq", body, prefix, signed_in)


def _dlq_row(entry: dict[str, Any]) -> str:
    event_id = entry.get("event_id") or ""
    link = f'<a href="/events/{h(event_id)}">{h(event_id)}</a>' if event_id else "unknown"
    redrives = "; ".join(
        f"{r['at']} to {r['to']['topic']}[{r['to']['partition']}]@{r['to']['offset']}"
        for r in entry["redrives"]
    )
    return (
        f'<tr data-partition="{entry["partition"]}" data-offset="{entry["offset"]}"'
        f' data-event="{h(event_id)}">'
        f'<td class="time">{h(entry["at"])}</td><td>{h(entry["stage"])}</td>'
        f"<td>{h(entry['reason'])}</td><td>{h(entry['source'])}</td><td>{link}</td>"
        f'<td class="event-state"></td><td class="redrives">{h(redrives)}</td>'
        '<td><button class="redrive" type="button">Redrive</button></td></tr>'
    )
