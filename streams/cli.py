"""The `postee` command: run the worker, validate a config, send events, tail topics.

Every option also reads a `POSTEE_*` variable (see the README). Config problems are found
before anything connects to Kafka, and printed all at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from streams import config as config_module
from streams import output_fit, records, tracing
from streams.errors import ConfigError, ConfigErrors
from streams.loading import Loaded, compile_config
from streams.rules import RouteMatcher, RouteRule
from streams.settings import Settings, check_runner_name
from streams.timeparse import parse_time

__all__ = ["main"]

console = Console(stderr=True)


def _settings(config: str | None, bootstrap: str | None, prefix: str | None) -> Settings:
    base = Settings.from_env()
    changes: dict[str, Any] = {}
    if config:
        changes["config_path"] = Path(config)
    if bootstrap:
        changes["kafka"] = replace(base.kafka, bootstrap=bootstrap)
    if prefix:
        changes["topics"] = replace(base.topics, prefix=prefix)
    return base.with_overrides(**changes)


def _json_logs_now(settings: Settings) -> None:
    """With `POSTEE_LOG_FORMAT=json`, lines logged while the app is built are JSON too
    (the worker installs the same configuration when it starts)."""
    if settings.log_format == "json":
        from streams import logs

        logging.config.dictConfig(logs.logging_config(settings.loglevel))


def _traces(settings: Settings) -> None:
    """Start traces when the settings turn them on (README "Traces"), or exit."""
    try:
        tracing.setup(settings)
    except ConfigError as exc:
        _fail([exc])


def _fail(errors: list[ConfigError]) -> NoReturn:
    for error in errors:
        # Plain text, one line per error: grep-able, never wrapped.
        click.echo(f"error: {error.describe()}", err=True)
    raise SystemExit(2)


def _read(settings: Settings, with_routes: bool = True) -> config_module.PosteeConfig:
    """Load the config, or print every error and exit."""
    try:
        return config_module.load(
            settings.config_path, settings.rego_filters_path, with_routes=with_routes
        )
    except ConfigErrors as exc:
        _fail(exc.errors)
    except ConfigError as exc:
        _fail([exc])


def _load(settings: Settings) -> Loaded:
    """Load the config, compile routes and templates, or print every error and exit."""
    try:
        return compile_config(settings)
    except ConfigErrors as exc:
        _fail(exc.errors)
    except ConfigError as exc:
        _fail([exc])


config_option = click.option("--config", "-c", help="Postee cfg.yaml [env POSTEE_CFG]")
bootstrap_option = click.option(
    "--bootstrap", "-b", help="Kafka bootstrap servers [env POSTEE_KAFKA]"
)
prefix_option = click.option("--topic-prefix", "-p", help="topic prefix [env POSTEE_TOPIC_PREFIX]")


@click.group()
def main() -> None:
    """Postee Streams: route security alerts with Postee's Rego rules, on Kafka."""


@main.command()
@config_option
@bootstrap_option
@prefix_option
@click.option("--http", "http", help="ingest bridge host:port [env POSTEE_HTTP]")
@click.option("--no-ingest", is_flag=True, help="run without the HTTP bridge [env POSTEE_INGEST=0]")
def run(
    config: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    http: str | None,
    no_ingest: bool,
) -> None:
    """Run the router, the action agents and the ingest bridge in one worker."""

    from streams import executor, ingest, plugin_agent, reload, router
    from streams.app import PosteeWorker, create_app
    from streams.topics import TopicDeclarer, internal_specs

    settings = _settings(config, bootstrap, topic_prefix)
    if http or no_ingest:
        address = Settings.from_env({"POSTEE_HTTP": http}).ingest if http else settings.ingest
        ingest_settings = replace(
            settings.ingest, host=address.host, port=address.port, enabled=not no_ingest
        )
        settings = settings.with_overrides(ingest=ingest_settings)
    loaded = _load(settings)
    _json_logs_now(settings)
    _traces(settings)
    app = create_app(settings, loaded.config, loaded.matcher, loaded.renderer)
    router.install(app)
    reloader = reload.install(app)
    plugin_agent.install(app)
    pool = executor.ActionPool(settings)
    executor.install(app, pool)
    if settings.ingest.enabled:
        app.web_server(ingest.IngestBridge(app, reloader))
    elif settings.ingest.probes:
        app.web_server(ingest.IngestBridge(app, reloader, ingest=False))
    declarer = TopicDeclarer(settings, app.postee_topics.specs() + internal_specs(app))
    PosteeWorker.of(app, settings, declarer, pool).execute_from_commandline()


@main.command("runner")
@config_option
@bootstrap_option
@prefix_option
@click.option(
    "--name",
    required=True,
    envvar="POSTEE_RUNNER_NAME",
    help="this runner's name, as in the actions' runs-on [env POSTEE_RUNNER_NAME]",
)
def runner_command(
    config: str | None, bootstrap: str | None, topic_prefix: str | None, name: str
) -> None:
    """Run the actions with `runs-on: NAME` here (e.g. on that node); routes are ignored."""
    from streams import runner

    settings = _settings(config, bootstrap, topic_prefix)
    try:
        check_runner_name(name)
    except ConfigError as exc:
        _fail([exc])
    settings = settings.with_overrides(
        runner_name=name, ingest=replace(settings.ingest, enabled=False)
    )
    postee_config = _read(settings, with_routes=False)
    _json_logs_now(settings)
    _traces(settings)
    runner.worker(settings, postee_config).execute_from_commandline()


@main.command("runners")
@bootstrap_option
@prefix_option
@click.option("--json", "as_json", is_flag=True, help="print JSON Lines")
def runners_command(bootstrap: str | None, topic_prefix: str | None, as_json: bool) -> None:
    """List the runners of a deployment: lag of their commands, members, last outcome."""
    from streams import runners_admin

    settings = _settings(None, bootstrap, topic_prefix)
    statuses = asyncio.run(runners_admin.runner_statuses(settings))
    if as_json:
        for status in statuses:
            click.echo(json.dumps(status.as_dict()))
        return
    table = Table("runner", "state", "commands", "done", "lag", "last outcome")
    for s in statuses:
        last = s.last or {}
        table.add_row(
            s.name,
            f"{s.state} ({s.members} member{'s' if s.members != 1 else ''})",
            str(s.end_offset),
            "-" if s.committed is None else str(s.committed),
            str(s.lag),
            " ".join(str(last[k]) for k in ("state", "status", "at") if last.get(k)) or "-",
        )
    Console().print(table)


@main.command()
@config_option
@bootstrap_option
@prefix_option
@click.option("--http", "http", help="UI host:port [env POSTEE_UI_HTTP, 127.0.0.1:8083]")
def ui(
    config: str | None, bootstrap: str | None, topic_prefix: str | None, http: str | None
) -> None:
    """Serve the web UI: live events, timelines, the DLQ and replays (README: Web UI)."""
    from streams.ui import server

    settings = _settings(config, bootstrap, topic_prefix)
    if http:
        address = Settings.from_env({"POSTEE_UI_HTTP": http}).ui
        settings = settings.with_overrides(
            ui=replace(settings.ui, host=address.host, port=address.port)
        )
    postee_config = _load(settings).config
    try:
        server.check_exposure(settings.ui)
    except ConfigError as exc:
        _fail([exc])
    _traces(settings)  # its replays start traces
    server.run(settings, postee_config)


@main.command()
@click.argument("cfg", required=False)
def validate(cfg: str | None) -> None:
    """Check a config file (structure, references, Rego); print every error and warning."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    settings = _settings(cfg, None, None)
    loaded = _load(settings)
    config, renderer = loaded.config, loaded.renderer
    for warning in output_fit.warnings(config, renderer):
        click.echo(f"warning: {warning}", err=True)
    Console().print(
        f"[green]ok[/green] {config.file}: {len(config.routes)} routes, "
        f"{len(config.actions)} actions, {len(config.templates)} templates"
    )


@main.command()
@bootstrap_option
@prefix_option
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def send(bootstrap: str | None, topic_prefix: str | None, files: tuple[str, ...]) -> None:
    """Produce event files (one JSON object each) to <prefix>.events."""
    settings = _settings(None, bootstrap, topic_prefix)
    events = []
    for name in files:
        raw = Path(name).read_bytes()
        try:
            records.parse_json_object(raw)
        except Exception as exc:
            console.print(f"[red]error[/red] {name}: {exc}")
            raise SystemExit(2) from None
        events.append((name, raw))
    from streams.kafka_io import produce_events

    for name, event_id in asyncio.run(produce_events(settings, events)):
        click.echo(f"{event_id}\t{name}")


@main.command()
@bootstrap_option
@prefix_option
@click.argument(
    "what", type=click.Choice(["events", "outcomes", "dlq", "replay"]), default="outcomes"
)
@click.option("--from-beginning", is_flag=True, help="start at the oldest record, not the newest")
@click.option("--max", "max_records", type=int, default=None, help="stop after this many records")
@click.option("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
@click.option("--json", "as_json", is_flag=True, help="print JSON Lines")
def tail(
    bootstrap: str | None,
    topic_prefix: str | None,
    what: str,
    from_beginning: bool,
    max_records: int | None,
    idle_timeout: float | None,
    as_json: bool,
) -> None:
    """Pretty-print records of a topic as they come."""
    from streams.kafka_io import tail_topic

    settings = _settings(None, bootstrap, topic_prefix)
    out = Console()

    def show(record: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(record, ensure_ascii=False))
        else:
            out.print_json(data=record)

    try:
        asyncio.run(
            tail_topic(
                settings,
                settings.topics.name(what),
                show,
                from_beginning=from_beginning,
                max_records=max_records,
                idle_timeout_s=idle_timeout,
            )
        )
    except KeyboardInterrupt:
        sys.exit(130)


@main.command("replay")
@config_option
@bootstrap_option
@prefix_option
@click.option("--from", "start", required=True, help="window start: ISO 8601, 'now' or an age (2h)")
@click.option("--to", "end", default="now", show_default=True, help="window end")
@click.option("--route", help="replay only what this route matches, against it alone")
@click.option("--filter", "rego_filter", help="replay only events matching this Rego rule body")
@click.option("--dry-run/--execute", default=True, help="describe actions (default) or run them")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=60.0,
    show_default=True,
    help="seconds to wait for the routing decisions of the replayed events",
)
def replay_command(
    config: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    start: str,
    end: str,
    route: str | None,
    rego_filter: str | None,
    dry_run: bool,
    wait_s: float,
) -> None:
    """Replay a time window of <prefix>.events through today's routes."""
    from streams import replay

    settings = _settings(config, bootstrap, topic_prefix)
    try:
        window = (parse_time(start), parse_time(end))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    rules = _replay_rules(settings, route, rego_filter)
    plan = replay.ReplayPlan(
        start=window[0],
        end=window[1],
        route=route,
        selector=RouteMatcher.compile(rules) if rules else None,
        required=frozenset(r.name for r in rules),
        execute=not dry_run,
    )
    _traces(settings)
    started = datetime.now(UTC)
    with _progress() as bar:
        task = bar.add_task("reading events", total=None)
        summary = asyncio.run(
            replay.replay(
                settings, plan, lambda done, total: bar.update(task, completed=done, total=total)
            )
        )
    complete = True
    if summary.replayed:
        complete = asyncio.run(replay.collect_results(settings, summary, started, wait_s))
    _print_summary(summary, plan, complete)
    if not complete:
        raise SystemExit(1)


def _replay_rules(
    settings: Settings, route: str | None, rego_filter: str | None
) -> list[RouteRule]:
    rules = []
    if route:
        postee_config = _load(settings).config
        chosen = postee_config.route(route)
        if chosen is None:
            raise click.BadParameter(f"no route named '{route}' in {postee_config.file}")
        rules.append(chosen.as_rule())
    if rego_filter:
        rules.append(RouteRule(name="--filter", input=rego_filter))
    errors = RouteMatcher.check(rules)
    if errors:
        _fail([ConfigError(e.message, where=f"route '{e.route}'") for e in errors])
    return rules


def _progress() -> Progress:
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    return Progress(*columns, console=console)


def _print_summary(summary: Any, plan: Any, complete: bool) -> None:
    out = Console()
    mode = "execute" if plan.execute else "dry run"
    out.print(
        f"replay [bold]{summary.replay_id}[/bold] ({mode}): {summary.read} events read, "
        f"{summary.replayed} replayed, {summary.skipped_undecodable} undecodable skipped"
    )
    out.print(f"routed {summary.routed}/{summary.replayed}, commands issued: {summary.commands}")
    for name, count in sorted(summary.routes.items()):
        out.print(f"  route {name}: {count} events matched")
    if not complete:
        out.print(
            "[red]not every replayed event was routed before --wait ran out;"
            " is a worker running?[/red]"
        )


@main.command()
@bootstrap_option
@prefix_option
@click.argument("event_id", required=False)
@click.option("--since", help="window start (ISO 8601, 'now' or an age like 2h), instead of an id")
@click.option("--until", default="now", show_default=True, help="window end")
@click.option("--route", help="with --since: only events this route matched")
@click.option("--json", "as_json", is_flag=True, help="print JSON Lines")
def timeline(
    bootstrap: str | None,
    topic_prefix: str | None,
    event_id: str | None,
    since: str | None,
    until: str,
    route: str | None,
    as_json: bool,
) -> None:
    """What happened to an event (or to every event of a window), from the topics."""
    from streams import timeline as story

    settings = _settings(None, bootstrap, topic_prefix)
    if (event_id is None) == (since is None):
        raise click.UsageError("give an EVENT_ID or --since (not both)")
    if event_id is not None:
        entries = asyncio.run(story.event_timeline(settings, event_id))
        if not entries:
            click.echo(
                f"no record of event {event_id} on the {settings.topics.prefix}.* topics", err=True
            )
            raise SystemExit(1)
        _show_entries(entries, as_json)
        return
    try:
        start, end = parse_time(str(since)), parse_time(until)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    rows = asyncio.run(story.window_timeline(settings, start, end, route))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row.as_dict()))
        return
    table = Table("first seen", "event", "source", "routes", "commands", "outcomes", "replays")
    for row in rows:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(row.statuses.items()))
        table.add_row(
            row.first_at.isoformat(timespec="seconds"),
            row.event_id,
            row.source,
            ", ".join(sorted(row.routes)) or "-",
            str(row.commands),
            outcomes or "-",
            str(len(row.replays)),
        )
    Console().print(table)


def _show_entries(entries: list[Any], as_json: bool) -> None:
    from streams.timeline import describe

    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry.as_dict(), ensure_ascii=False))
        return
    table = Table("time", "what", "details")
    for entry in entries:
        table.add_row(entry.at.isoformat(timespec="milliseconds"), entry.kind, describe(entry))
    Console().print(table)


@main.group("silence")
def silence_group() -> None:
    """Silence routes for a while: matching events are recorded as silenced, not run."""


@silence_group.command("add")
@config_option
@bootstrap_option
@prefix_option
@click.option("--route", help="silence this route (with --rule: only for events it matches)")
@click.option("--rule", help="a Rego rule body, evaluated like a route's input: on the event")
@click.option("--start", default="now", show_default=True, help="ISO 8601, 'now', or an age (2h)")
@click.option("--end", help="when it ends: ISO 8601")
@click.option("--for", "duration", help="how long it lasts from --start: 30m, 2h, 1d, 90s")
@click.option("--author", envvar="USER", required=True, help="who silences [env USER]")
@click.option("--comment", required=True, help="why")
def silence_add(
    config: str | None,
    bootstrap: str | None,
    topic_prefix: str | None,
    route: str | None,
    rule: str | None,
    start: str,
    end: str | None,
    duration: str | None,
    author: str,
    comment: str,
) -> None:
    """Add a silence; prints its id."""
    from streams import silence_admin, silences

    settings = _settings(config, bootstrap, topic_prefix)
    if route is None and rule is None:
        raise click.UsageError("give --route, --rule, or both")
    if (end is None) == (duration is None):
        raise click.UsageError("give --end or --for (one of them)")
    try:
        begins = parse_time(start)
        ends = parse_time(end) if end else begins + timedelta(seconds=_seconds(str(duration)))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if ends <= begins:
        raise click.BadParameter(f"the silence would end ({ends}) before it starts ({begins})")
    if route is not None and _read(settings).route(route) is None:
        raise click.BadParameter(f"no route named '{route}' in {settings.config_path}")
    if rule is not None:
        errors = RouteMatcher.check([RouteRule(name="--rule", input=rule)])
        if errors:
            _fail([ConfigError(e.message, key="--rule") for e in errors])
    silence = silences.Silence(
        id=silences.new_silence_id(),
        start=records.iso(begins),
        end=records.iso(ends),
        author=author,
        comment=comment,
        created_at=records.utc_now(),
        route=route,
        rule=rule,
    )
    asyncio.run(silence_admin.write_silence(settings, silence))
    click.echo(silence.id)


def _seconds(duration: str) -> float:
    seconds = config_module.parse_duration_s(duration)
    if seconds <= 0:
        raise ValueError(f"--for must be a positive duration, got {duration!r}")
    return seconds


@silence_group.command("list")
@bootstrap_option
@prefix_option
@click.option("--all", "show_all", is_flag=True, help="also the silences that ended")
@click.option("--json", "as_json", is_flag=True, help="print JSON Lines")
def silence_list(
    bootstrap: str | None, topic_prefix: str | None, show_all: bool, as_json: bool
) -> None:
    """List the silences that hold now or later (--all: also those that ended)."""
    from streams import silence_admin

    settings = _settings(None, bootstrap, topic_prefix)
    now = datetime.now(UTC)
    found = asyncio.run(silence_admin.read_silences(settings)).values()
    shown = sorted(
        (s for s in found if show_all or s.state(now) in ("active", "pending")),
        key=lambda s: s.start,
    )
    if as_json:
        for s in shown:
            click.echo(json.dumps({**s.to_dict(), "state": s.state(now)}, ensure_ascii=False))
        return
    table = Table("state", "matcher", "start", "end", "author", "comment")
    table.columns.insert(0, Column("id", no_wrap=True))
    for s in shown:
        state = s.state(now) + (f" by {s.expired_by}" if s.expired_by else "")
        table.add_row(s.id, state, s.matcher(), s.start, s.end, s.author, s.comment)
    Console().print(table)


@silence_group.command("expire")
@bootstrap_option
@prefix_option
@click.argument("silence_id")
@click.option("--author", envvar="USER", required=True, help="who expires it [env USER]")
def silence_expire(
    bootstrap: str | None, topic_prefix: str | None, silence_id: str, author: str
) -> None:
    """End a silence now (it stays listed with --all, naming who ended it)."""
    from streams import silence_admin

    settings = _settings(None, bootstrap, topic_prefix)
    now = datetime.now(UTC)
    found = asyncio.run(silence_admin.read_silences(settings)).get(silence_id)
    if found is None:
        click.echo(f"error: no silence {silence_id} on {settings.topics.prefix}.silences", err=True)
        raise SystemExit(1)
    if found.state(now) in ("ended", "expired"):
        click.echo(f"silence {silence_id} already ended at {found.end}", err=True)
        return
    asyncio.run(silence_admin.write_silence(settings, found.expired(author, now)))
    click.echo(f"expired {silence_id}")
