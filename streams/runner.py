"""`postee runner --name NAME`: runs the actions with `runs-on: NAME`, where it runs.

A runner is an action worker of its own (README, "Runners"): it consumes only
`<prefix>.runner.<NAME>` (one partition, created by whoever writes to it first, or by the
runner at start), in consumer group `<prefix>-runner-<NAME>`, with one command ledger for
every action type (`command-ledger-runner`, changelog
`<prefix>-runner-<NAME>-command-ledger-runner-changelog`). Everything else is the
executor's: outcomes (with `runner: NAME`), retries, the DLQ, the next command of a
serialized route (to its own action's place: this runner, another one, or the workers),
and the SIGTERM grace period. Its retries wait on `<prefix>.retry.runner.<NAME>`.

It needs no routes and no templates: the router rendered the template into the command,
and the runner looks the action up by name in its own config (`actions:` only).
"""

from __future__ import annotations

import logging

from streams import executor, reload
from streams.app import PosteeApp, PosteeWorker, create_app
from streams.config import PosteeConfig
from streams.ingest import IngestBridge
from streams.ledger import CommandLedger
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.topics import RUNNER_PARTITIONS, TopicDeclarer, internal_specs

__all__ = ["build_app", "worker"]

log = logging.getLogger(__name__)


def build_app(settings: Settings, config: PosteeConfig) -> tuple[PosteeApp, executor.ActionPool]:
    """The runner's Faust app (app id `<prefix>-runner-<name>`) and its action pool."""
    name = _name(settings)
    mine = [
        a.name
        for a in config.actions.values()
        if a.enable and a.runs_on and (a.runs_on == name or a.runs_on.startswith("event.input."))
    ]
    if not mine:
        log.warning(
            "%s: no enabled action has runs-on: %s (or event.input...); commands sent here fail",
            config.file,
            name,
        )
    app = create_app(settings, config, RouteMatcher.compile([]))
    pool = executor.ActionPool(settings)
    ledger = CommandLedger(app, "runner", partitions=RUNNER_PARTITIONS)
    topic = app.postee_topics.runner(name)
    executor.subscribe(app, pool, topic, "execute_runner_commands", ledger)
    # Its retries wait on a topic of its own, `<prefix>.retry.runner.<NAME>` (one partition).
    executor.subscribe_retries(app, pool, lambda _type: ledger)
    return app, pool


def worker(settings: Settings, config: PosteeConfig) -> PosteeWorker:
    """The runner process: its topic and the shared ones exist before it subscribes."""
    app, pool = build_app(settings, config)
    reloader = reload.install(app)  # SIGHUP (or the file watch) loads its actions again
    if settings.ingest.probes:
        app.web_server(IngestBridge(app, reloader, ingest=False))
    topics = app.postee_topics
    specs = [*topics.specs(), topics.runner_spec(_name(settings)), *internal_specs(app)]
    return PosteeWorker.of(app, settings, TopicDeclarer(settings, specs), pool)


def _name(settings: Settings) -> str:
    if not settings.runner_name:
        raise ValueError("a runner needs a name (settings.runner_name)")
    return settings.runner_name
