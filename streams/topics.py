"""Our topics: names, partition counts, retention, and their creation at start.

All topics carry raw bytes (keys and values): we decode them ourselves in `records`, so
a malformed record reaches our code (and the DLQ) instead of failing inside Faust.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from mode import Service
from mode.utils.times import want_seconds

import actions
from streams.errors import ConfigError
from streams.settings import RECORD_ENVELOPE_BYTES, Settings

__all__ = [
    "RUNNER_PARTITIONS",
    "TopicDeclarer",
    "TopicSpec",
    "Topics",
    "internal_specs",
    "retry_topic_name",
    "runner_topic_name",
    "silences_spec",
]

log = logging.getLogger(__name__)

#: One command topic per action type the registry knows.
ACTION_TYPES = tuple(actions.REGISTRY)
#: One partition per runner topic: one runner reads it, in order (README, "Runners").
RUNNER_PARTITIONS = 1


def runner_topic_name(settings: Settings, runner: str) -> str:
    """Where the commands of the actions with `runs-on: <runner>` wait for that runner."""
    return settings.topics.name(f"runner.{runner}")


def retry_topic_name(settings: Settings) -> str:
    """Where this worker's (or runner's) retries wait for their time (streams/retries.py):
    `<prefix>.retry`, or `<prefix>.retry.runner.<NAME>` for runner NAME."""
    if settings.runner_name:
        return settings.topics.name(f"retry.runner.{settings.runner_name}")
    return settings.topics.name("retry")


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_s: int | None
    config: Mapping[str, str] = field(default_factory=dict)
    #: Faust's own (changelogs, the leader topic): created with ours, checked by Faust.
    internal: bool = False


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
        #: Retries waiting for their time (streams/retries.py), keyed by event id.
        self.retry = self._raw(app, retry_topic_name(settings))
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
        specs.append(silences_spec(self.settings))
        specs.append(self.retry_spec())
        return specs

    def retry_spec(self) -> TopicSpec:
        """Partitioned as the commands it retries: a runner's one, the workers' topics'."""
        partitions = (
            RUNNER_PARTITIONS if self.settings.runner_name else self.settings.topics.partitions
        )
        return TopicSpec(
            retry_topic_name(self.settings), partitions, self.settings.topics.actions_retention_s
        )


def silences_spec(settings: Settings) -> TopicSpec:
    """Silences: compacted (the latest version of each id stays), read whole by every
    worker (silence_reader.py); one partition is plenty for a few records."""
    return TopicSpec(settings.topics.name("silences"), 1, None, {"cleanup.policy": "compact"})


def internal_specs(app: faust.App) -> list[TopicSpec]:
    """Faust's own topics: the table changelogs and the leader topic, with the settings
    Faust would give them. We create them with ours in one request, and the app is built
    with `topic_allow_declare=False`: Faust creates them one at a time, each followed by a
    metadata refresh, which took 40 s at start with a ledger table per action type."""
    specs = [TopicSpec(f"{app.conf.id}-__assignor-__leader", 1, None, internal=True)]
    for table in app.tables.values():
        topic = table.changelog_topic
        flags = {"compact"} if topic.compacting else set()
        flags |= {"delete"} if topic.deleting else set()
        config = {"cleanup.policy": ",".join(sorted(flags))} if flags else {}
        if topic.retention:
            config["retention.ms"] = str(int(want_seconds(topic.retention) * 1000))
        config |= {k: str(v) for k, v in (topic.config or {}).items()}
        partitions = topic.partitions or app.conf.topic_partitions
        specs.append(TopicSpec(topic.get_topic_name(), partitions, None, config, internal=True))
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
    """Create missing topics, then check that every one accepts our largest record.
    Raises `ConfigError` naming the topic when one does not (a record refused by the
    broker would otherwise stop its partition at run time)."""
    record_bytes = settings.ingest.max_record_bytes
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=settings.topics.replication,
                topic_configs={
                    **({"retention.ms": str(s.retention_s * 1000)} if s.retention_s else {}),
                    **s.config,
                    "max.message.bytes": str(record_bytes),
                },
            )
            for s in specs
            if s.name not in existing
        ]
        if missing:
            # Another worker may create them between our list and create.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(t.name for t in missing))
        ours = [s.name for s in specs if not s.internal]
        await _check_record_limits(admin, ours, record_bytes)
    finally:
        await admin.close()


async def _check_record_limits(
    admin: AIOKafkaAdminClient, names: list[str], record_bytes: int
) -> None:
    responses = await admin.describe_configs(
        [
            ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None})
            for name in names
        ]
    )
    for response in responses:
        for _code, _message, _type, name, entries in response.resources:
            limit = next((int(e[1]) for e in entries if e[0] == "max.message.bytes"), None)
            if limit is not None and limit < record_bytes:
                raise ConfigError(
                    f"topic {name} accepts records up to {limit} bytes, but "
                    f"POSTEE_MAX_BODY_BYTES needs {record_bytes} (the body limit plus "
                    f"{RECORD_ENVELOPE_BYTES} for headers and command fields): raise the "
                    "topic's max.message.bytes or lower POSTEE_MAX_BODY_BYTES",
                    key="POSTEE_MAX_BODY_BYTES",
                )
