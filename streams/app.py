"""The Faust application of one deployment, built from settings and a loaded config.

A factory rather than an import-time singleton: the CLI validates the config and compiles
the Rego bundle first (failing fast, before any connection), then builds the app; tests
build apps with their own topic prefixes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import ProducerT

from streams.config import PosteeConfig
from streams.outcomes import Publisher
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.templates import TemplateRenderer
from streams.topics import Topics

__all__ = ["PosteeApp", "PosteeWorker", "create_app"]


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

    settings: Settings
    config: PosteeConfig
    matcher: RouteMatcher
    renderer: TemplateRenderer
    postee_topics: Topics
    publisher: Publisher


class PosteeWorker(faust.Worker):
    """Tells its services when stopping begins (SIGTERM): Faust then waits for in-flight
    records, and the action pool bounds that wait with its shutdown grace period."""

    async def on_stop(self) -> None:
        for service in self.services:
            begin_shutdown = getattr(service, "begin_shutdown", None)
            if begin_shutdown is not None:
                begin_shutdown()
        await super().on_stop()


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
        # Our own HTTP bridge is registered with `app.web_server` when ingest is on.
        web_enabled=settings.ingest.enabled,
        producer_acks=-1,  # an accepted event is on every in-sync replica
        # One size setting (POSTEE_MAX_BODY_BYTES) bounds every record we write and read;
        # the topics are created (and checked at start) to accept it (topics.py).
        producer_max_request_size=settings.ingest.max_record_bytes,
        consumer_max_fetch_size=settings.ingest.max_record_bytes,
        broker_commit_interval=settings.kafka.commit_interval_s,
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
    app.publisher = Publisher(app.postee_topics, settings.ingest.max_record_bytes)
    return app
