"""Our topics: names, partition counts, retention, and their creation at start.

All topics carry raw bytes (keys and values): we decode them ourselves in `records`, so
a malformed record reaches our code (and the DLQ) instead of failing inside Faust.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from mode import Service

from streams.settings import Settings

__all__ = ["RUNNER_PARTITIONS", "TopicDeclarer", "Topics", "runner_topic_name"]

log = logging.getLogger(__name__)

ACTION_TYPES = ("exec", "http", "docker", "kubernetes")
#: One partition per runner topic: one runner reads it, in order (README, "Runners").
RUNNER_PARTITIONS = 1


def runner_topic_name(settings: Settings, runner: str) -> str:
    """Where the commands of the actions with `runs-on: <runner>` wait for that runner."""
    return settings.topics.name(f"runner.{runner}")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_s: int


class Topics:
    """The Faust topic objects of one deployment (one topic prefix)."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._runners: dict[str, faust.TopicT] = {}
        #: Runner topic names not yet created by this process, and their runner names.
        self._undeclared: dict[str, str] = {}
        name = settings.topics.name
        self.events = self._raw(app, name("events"))
        self.replay = self._raw(app, name("replay"))
        self.outcomes = self._raw(app, name("outcomes"))
        self.dlq = self._raw(app, name("dlq"))
        #: Plugin requests, keyed by dedupe/aggregation key (see plugin_agent.py).
        self.plugins = self._raw(app, name("plugins"))
        self.actions = {kind: self._raw(app, name(f"actions.{kind}")) for kind in ACTION_TYPES}
        #: What the router consumes: new events and replayed ones, through one agent.
        self.router_input = app.topic(
            name("events"),
            name("replay"),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    @staticmethod
    def _raw(app: faust.App, name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    def runner(self, name: str) -> faust.TopicT:
        """The command topic of runner `name`, made on first use (see `declare_runners`)."""
        if name not in self._runners:
            topic_name = runner_topic_name(self.settings, name)
            self._runners[name] = self._raw(self.app, topic_name)
            self._undeclared[topic_name] = name
        return self._runners[name]

    def runner_spec(self, name: str) -> TopicSpec:
        return TopicSpec(
            runner_topic_name(self.settings, name),
            RUNNER_PARTITIONS,
            self.settings.topics.actions_retention_s,
        )

    async def declare_runners(self, topics: Iterable[faust.TopicT]) -> None:
        """Create the runner topics among `topics` that this process has not yet seen:
        commands for a runner that never started must wait on the broker for it, with our
        retention (and on brokers that do not create topics on first write)."""
        if not self._undeclared:
            return
        todo = {
            n: self._undeclared[n] for t in topics if (n := t.get_topic_name()) in self._undeclared
        }
        if todo:
            await declare_topics(
                self.settings, [self.runner_spec(r) for r in sorted(todo.values())]
            )
            for name in todo:
                self._undeclared.pop(name, None)

    def specs(self) -> list[TopicSpec]:
        t = self.settings.topics
        long, short = t.events_retention_s, t.actions_retention_s
        specs = [
            TopicSpec(t.name("events"), t.partitions, long),
            TopicSpec(t.name("replay"), t.partitions, long),
            TopicSpec(t.name("outcomes"), t.partitions, long),
            TopicSpec(t.name("dlq"), t.partitions, long),
        ]
        specs += [TopicSpec(t.name(f"actions.{k}"), t.partitions, short) for k in ACTION_TYPES]
        specs.append(TopicSpec(t.name("plugins"), t.partitions, short))
        return specs


class TopicDeclarer(Service):
    """Creates missing topics before the app's consumer subscribes (a worker dependency),
    with our partition counts and retention rather than the broker's defaults."""

    def __init__(self, settings: Settings, specs: list[TopicSpec], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.topic_specs = specs

    async def on_start(self) -> None:
        await declare_topics(self.settings, self.topic_specs)


async def declare_topics(settings: Settings, specs: list[TopicSpec]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=settings.topics.replication,
                topic_configs={"retention.ms": str(s.retention_s * 1000)},
            )
            for s in specs
            if s.name not in existing
        ]
        if missing:
            # Another worker may create them between our list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(t.name for t in missing))
    finally:
        await admin.close()
