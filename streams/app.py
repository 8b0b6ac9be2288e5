"""The Faust application of one deployment, built from settings and a loaded config.

A factory rather than an import-time singleton: the CLI validates the config and compiles
the Rego bundle first (failing fast, before any connection), then builds the app; tests
build apps with their own topic prefixes.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import faust
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import ConsumerT, ProducerT

from streams import logs, metrics
from streams.config import PosteeConfig
from streams.consumer import PosteeConsumer
from streams.eval_pool import EvalPool
from streams.outcomes import Publisher
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.silence_reader import SilenceBook
from streams.templates import TemplateRenderer
from streams.topics import Topics

__all__ = ["PosteeApp", "PosteeWorker", "consumer_lag", "create_app", "watch_children_with_pidfd"]

RUNNER_SESSION_TIMEOUT_S = 10.0


class KeyPartitioner:
    """Kafka's default partitioner (murmur2 of the key, as aiokafka and the Java client),
    with the hashes of recent keys remembered: the router writes a routed record and every
    command of an event under the event's id, and aiokafka's murmur2 is pure Python."""

    def __init__(self) -> None:
        self._default = DefaultPartitioner()

    @staticmethod
    @functools.lru_cache(maxsize=4096)
    def _hash(key: bytes) -> int:
        return int(murmur2(key)) & 0x7FFFFFFF

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Any) -> int:
        if key is None:
            return int(self._default(key, all_partitions, available))
        return all_partitions[self._hash(key) % len(all_partitions)]


class IdempotentProducer(aiokafka_driver.Producer):
    """Faust turns on Kafka's idempotent producer only inside transactions (exactly-once,
    which we avoid: DESIGN §5). We want it always: a retried send after a lost ack must
    not write the record twice."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {"acks": "all", "enable_idempotence": True}


class PosteeApp(faust.App):
    """A Faust app that also carries what our agents share: settings, the config, the
    compiled routes, the topics and the publisher."""

    def _new_producer(self) -> ProducerT:
        return IdempotentProducer(self.transport, loop=self.loop, beacon=self.beacon)

    def _new_consumer(self) -> ConsumerT:
        return PosteeConsumer(
            self.transport,
            callback=self.topics.on_message,
            on_partitions_revoked=self._on_partitions_revoked,
            on_partitions_assigned=self._on_partitions_assigned,
            beacon=self.beacon,
            loop=self.transport.loop,
        )

    settings: Settings
    config: PosteeConfig
    matcher: RouteMatcher
    renderer: TemplateRenderer
    #: The evaluator processes (`router.install` creates it; it starts with the app).
    engine: EvalPool
    #: The silences of `<prefix>.silences` (`router.install` creates it).
    silences: SilenceBook
    postee_topics: Topics
    publisher: Publisher
    metrics: metrics.Metrics
    #: The action types whose command topics this worker consumes (`executor.install`);
    #: None where no action agent runs.
    action_types: frozenset[str] | None = None


class PosteeWorker(faust.Worker):
    """Tells its services when stopping begins (SIGTERM): Faust then waits for in-flight
    records, and the action pool bounds that wait with its shutdown grace period."""

    @classmethod
    def of(cls, app: PosteeApp, settings: Settings, *services: Any) -> PosteeWorker:
        """The worker of `postee run` and `postee runner`: with `POSTEE_LOG_FORMAT=json`,
        every line one object, so no banner, and print() becomes a log record."""
        json_logs = settings.log_format == "json"
        return cls(
            app,
            *services,
            loglevel=settings.loglevel,
            logging_config=logs.logging_config(settings.loglevel) if json_logs else None,
            quiet=json_logs,
        )

    async def on_first_start(self) -> None:
        watch_children_with_pidfd()
        await super().on_first_start()

    async def on_stop(self) -> None:
        for service in self.services:
            begin_shutdown = getattr(service, "begin_shutdown", None)
            if begin_shutdown is not None:
                begin_shutdown()
        await super().on_stop()


def watch_children_with_pidfd() -> None:
    """Python 3.11's default child watcher starts a thread per subprocess to wait for it:
    with a pidfd the event loop itself sees the exit. An exec command then costs the
    worker 0.69 ms of CPU instead of 1.06 (1,056 against 735 `true` scripts/s alone).
    Python 3.12 does this by itself (and deprecates the watcher API)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def create_app(
    settings: Settings,
    config: PosteeConfig,
    matcher: RouteMatcher,
    renderer: TemplateRenderer | None = None,
) -> PosteeApp:
    settings.kafka.data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the leaf
    app = PosteeApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka.bootstrap.split(",")],
        store=settings.kafka.store,
        datadir=str(settings.kafka.data_dir / settings.app_id),
        # Our own HTTP bridge is registered with `app.web_server` when ingest is on, or
        # its probes-only form with POSTEE_PROBES_HTTP.
        web_enabled=settings.ingest.enabled or settings.ingest.probes is not None,
        producer_linger_ms=settings.kafka.linger_ms,
        producer_partitioner=KeyPartitioner(),
        producer_acks=-1,  # an accepted event is on every in-sync replica
        # One size setting (POSTEE_MAX_BODY_BYTES) bounds every record we write and read;
        # the topics are created (and checked at start) to accept it (topics.py).
        producer_max_request_size=settings.ingest.max_record_bytes,
        consumer_max_fetch_size=settings.ingest.max_record_bytes,
        # Every topic, Faust's changelogs too, is created at start in one request by
        # topics.TopicDeclarer (Faust would create them one by one: slow).
        topic_allow_declare=False,
        broker_commit_interval=settings.kafka.commit_interval_s,
        # A runner is its group's only member: after a crash (kill -9, a node reboot) its
        # restart waits for the dead member's session to expire before it gets its topic
        # back. Heartbeats come from a background task, so a long action does not expire it.
        broker_session_timeout=settings.kafka.session_timeout_s
        or (RUNNER_SESSION_TIMEOUT_S if settings.runner_name else 60.0),
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication,
        # No standby table copies: the batch-closing timer reads only tables it owns.
        table_standby_replicas=0,
        autodiscover=False,
        debug=settings.debug,
    )
    app.settings = settings
    app.config = config
    app.matcher = matcher
    app.renderer = renderer or TemplateRenderer({})
    app.postee_topics = Topics(app, settings)
    app.metrics = metrics.Metrics()
    app.metrics.watch_lag(lambda: consumer_lag(app))
    limited = {name: a for name, a in config.actions.items() if a.rate_limit is not None}
    app.publisher = Publisher(
        app.postee_topics, settings.ingest.max_record_bytes, app.metrics, limited
    )
    return app


def consumer_lag(app: faust.App) -> Iterator[tuple[str, int]]:
    """(topic, records behind) for every partition assigned to this worker that it has
    read from since it started: the partition's high watermark (the offset the next
    record will get) minus the offset after the last record read."""
    consumer = app.consumer
    read_offsets = consumer._read_offset  # type: ignore[attr-defined]
    for tp in consumer.assignment():
        highwater, read = consumer.highwater(tp), read_offsets.get(tp)
        if highwater is not None and read is not None:
            yield tp.topic, int(highwater) - (int(read) + 1)
