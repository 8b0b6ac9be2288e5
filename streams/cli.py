"""The `postee` command: run the worker, validate a config, send events, tail topics.

Every option also reads a `POSTEE_*` variable (see the README). Config problems are found
before anything connects to Kafka, and printed all at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from streams import config as config_module
from streams import records
from streams.errors import ConfigError, ConfigErrors
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.templates import TemplateRenderer

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


def _fail(errors: list[ConfigError]) -> None:
    for error in errors:
        # Plain text, one line per error: grep-able, never wrapped.
        click.echo(f"error: {error.describe()}", err=True)
    raise SystemExit(2)


def _load(
    settings: Settings,
) -> tuple[config_module.PosteeConfig, RouteMatcher, TemplateRenderer]:
    """Load the config, compile routes and templates, or print every error and exit."""
    try:
        config = config_module.load(settings.config_path, settings.rego_filters_path)
    except ConfigErrors as exc:
        _fail(exc.errors)
    except ConfigError as exc:
        _fail([exc])
    errors = config_module.rule_errors(config)
    try:
        renderer = TemplateRenderer.compile(config.templates, settings.templates_path, config.file)
    except ConfigError as exc:
        errors.append(exc)
    if errors:
        _fail(errors)
    return config, RouteMatcher.compile([r.as_rule() for r in config.routes]), renderer


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
    import faust

    from streams import executor, ingest, router
    from streams.app import create_app
    from streams.topics import TopicDeclarer

    settings = _settings(config, bootstrap, topic_prefix)
    if http or no_ingest:
        address = Settings.from_env({"POSTEE_HTTP": http}).ingest if http else settings.ingest
        ingest_settings = replace(
            settings.ingest, host=address.host, port=address.port, enabled=not no_ingest
        )
        settings = settings.with_overrides(ingest=ingest_settings)
    postee_config, matcher, renderer = _load(settings)
    app = create_app(settings, postee_config, matcher, renderer)
    router.install(app)
    pool = executor.ActionPool(settings)
    executor.install(app, pool)
    if settings.ingest.enabled:
        app.web_server(ingest.IngestBridge(app))
    declarer = TopicDeclarer(settings, app.postee_topics.specs())
    worker = faust.Worker(app, declarer, pool, loglevel="debug" if settings.debug else "info")
    worker.execute_from_commandline()


@main.command()
@click.argument("cfg", required=False)
def validate(cfg: str | None) -> None:
    """Check a config file (structure, references, Rego); print every error."""
    settings = _settings(cfg, None, None)
    config, _, _ = _load(settings)
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
