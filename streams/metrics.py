"""Prometheus metrics of one worker, on a registry the app owns (never the global one:
tests build several apps in one process, and nothing else we import may add to ours).

Served at `GET /metrics` by the ingest bridge. Labels are bounded: source, result, type,
action and route names from the config, status, stage, plugin, decision, HTTP code;
never an event or command id. The call sites are one line each (router, executor,
ingest, outcomes, plugin agent); what they count is decided here.

    postee_events_received_total{source}              events the router read and decoded
    postee_events_routed_total{result}                matched | unmatched | failed
    postee_commands_issued_total{type}                commands written to a command topic
    postee_outcomes_total{type, status}               outcome records (one per attempt)
    postee_retries_total{type}                        attempts after a temporary failure
    postee_dlq_records_total{stage}                   DLQ records
    postee_plugin_decisions_total{plugin, decision}   deduplicated passed/dropped, aggregated joined
    postee_config_reloads_total{result}               applied | refused
    postee_evaluator_restarts_total{cause}            evaluator processes replaced: crash | timeout
    postee_http_responses_total{code}                 the ingest bridge's answers
    postee_ingest_ack_seconds                         POST received to 202 (broker acknowledged)
    postee_routing_seconds                            deciding one event (all routes, templates)
    postee_action_duration_seconds{type}              one attempt of an action
    postee_event_to_outcome_seconds{type}             event arrival to its command's last outcome
    postee_consumer_lag{topic}                        records not yet read, this worker's partitions
    postee_silences_active                            silences this worker applies now
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.records import Command, DlqRecord, Outcome, Routed

__all__ = ["CONTENT_TYPE", "Metrics", "timed_routing"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds; from sub-millisecond routing to actions that run for minutes.
BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

#: Sources the router knows (records.decode_event); anything else is counted as "other".
SOURCES = frozenset({"http", "kafka", "replay"})


class LagSource(Protocol):
    """What the lag collector reads: (topic, records behind) for each assigned partition."""

    def __call__(self) -> Iterator[tuple[str, int]]: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"postee_{name}", doc, labels, registry=self.registry)

        def histogram(name: str, doc: str, *labels: str) -> Histogram:
            return Histogram(
                f"postee_{name}", doc, labels, buckets=BUCKETS_S, registry=self.registry
            )

        self.events_received = counter(
            "events_received", "Events read and decoded by the router", "source"
        )
        self.events_routed = counter("events_routed", "Routing results", "result")
        self.commands_issued = counter(
            "commands_issued", "Commands written to a command topic", "type"
        )
        self._issued: dict[str, Any] = {}
        self.outcomes = counter("outcomes", "Outcome records (one per attempt)", "type", "status")
        self.retries = counter("retries", "Attempts after a temporary failure", "type")
        self.dlq_records = counter("dlq_records", "Records written to the DLQ", "stage")
        self.plugin_decisions = counter(
            "plugin_decisions", "Dedupe and aggregation decisions", "plugin", "decision"
        )
        self.config_reloads = counter("config_reloads", "Config reloads", "result")
        self.evaluator_restarts = counter(
            "evaluator_restarts", "Evaluator processes replaced (crash or timeout)", "cause"
        )
        self.http_responses = counter("http_responses", "Answers of the ingest bridge", "code")
        self.ingest_ack_seconds = histogram(
            "ingest_ack_seconds", "From a POST's arrival to its 202 (the broker acknowledged)"
        )
        self.routing_seconds = histogram("routing_seconds", "Deciding the routes of one event")
        self.action_seconds = histogram(
            "action_duration_seconds", "One attempt of an action", "type"
        )
        self.event_to_outcome_seconds = histogram(
            "event_to_outcome_seconds",
            "From the event's arrival at the bridge to its command's final outcome",
            "type",
        )

    # --- what the call sites report -----------------------------------------------------

    def routed(self, routed: Routed) -> None:
        source = routed.source if routed.source in SOURCES else "other"
        self.events_received.labels(source).inc()
        result = "failed" if routed.error else "matched" if routed.routes else "unmatched"
        self.events_routed.labels(result).inc()

    def command(self, kind: str) -> None:
        # The labelled child of each type, looked up once: the router counts every command.
        counter = self._issued.get(kind)
        if counter is None:
            counter = self._issued[kind] = self.commands_issued.labels(kind)
        counter.inc()

    def outcome(self, outcome: Outcome) -> None:
        self.outcomes.labels(outcome.type, outcome.status).inc()

    def attempt(self, outcome: Outcome) -> None:
        """One attempt that actually ran (not a refusal or a skipped redelivery)."""
        self.action_seconds.labels(outcome.type).observe(outcome.duration_ms / 1000)

    def delivered(self, command: Command, outcome: Outcome) -> None:
        """A command's final outcome: how long since its event arrived (when known)."""
        if not command.received_at or not outcome.final:
            return
        try:
            arrived = datetime.fromisoformat(command.received_at.replace("Z", "+00:00"))
            done = datetime.fromisoformat(outcome.finished_at.replace("Z", "+00:00"))
        except ValueError:  # a header someone else wrote: not worth a failed outcome
            return
        seconds = (done - arrived).total_seconds()
        if seconds >= 0:
            self.event_to_outcome_seconds.labels(outcome.type).observe(seconds)

    def retry(self, kind: str) -> None:
        self.retries.labels(kind).inc()

    def dlq(self, record: DlqRecord) -> None:
        self.dlq_records.labels(record.stage).inc()

    def config_reload(self, result: str) -> None:
        self.config_reloads.labels(result).inc()

    def evaluator_restart(self, cause: str) -> None:
        self.evaluator_restarts.labels(cause).inc()

    def plugin_decision(self, plugin: str, decision: str) -> None:
        self.plugin_decisions.labels(plugin, decision).inc()

    def watch_lag(self, source: LagSource) -> None:
        self.registry.register(_LagCollector(source))

    def watch_silences(self, count: Callable[[], int]) -> None:
        self.registry.register(_SilenceCollector(count))

    # --- serving -------------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def middleware(self) -> Any:
        """aiohttp middleware: every answer by code, and POST-to-ack for accepted events."""

        @web.middleware
        async def count(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            started = time.monotonic()
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self.http_responses.labels(str(exc.status)).inc()
                raise
            except Exception:
                self.http_responses.labels("500").inc()
                raise
            self.http_responses.labels(str(response.status)).inc()
            if request.method == "POST" and response.status == 202:
                self.ingest_ack_seconds.observe(time.monotonic() - started)
            return response

        return count


class _SilenceCollector(Collector):
    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "postee_silences_active", "Silences this worker applies now (read and in time)"
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        family.add_metric([], self._count())
        yield family


class _LagCollector(Collector):
    def __init__(self, source: LagSource) -> None:
        self.source = source

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "postee_consumer_lag",
            "Records not yet read on this worker's assigned partitions",
            labels=["topic"],
        )

    def describe(self) -> Iterator[Metric]:
        # Registering a collector without describe() calls collect() at once, which
        # would build the app's consumer (and its thread's event loop) at app creation.
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        lag = self._family()
        totals: dict[str, int] = {}
        try:
            for topic, behind in self.source():
                totals[topic] = totals.get(topic, 0) + max(behind, 0)
        except Exception:  # noqa: S110 - a scrape must never fail on a consumer in flux
            pass
        for topic, behind in sorted(totals.items()):
            lag.add_metric([topic], behind)
        yield lag


F = TypeVar("F", bound=Callable[..., Any])


def timed_routing(fn: F) -> F:
    """Decorates `async route_one(app, event)`: observes how long deciding took, the
    wait for an evaluator included."""

    @functools.wraps(fn)
    async def timed(app: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await fn(app, *args, **kwargs)
        finally:
            app.metrics.routing_seconds.observe(time.monotonic() - started)

    return timed  # type: ignore[return-value]
