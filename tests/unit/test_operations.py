"""Metrics, JSON logs and the dashboard, without services."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams import logs, metrics
from streams.errors import ConfigError
from streams.records import DlqRecord, Outcome, Routed
from streams.settings import Settings
from tests.conftest import REPO


def samples(m: metrics.Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = m.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def routed(routes: list[str], error: str | None = None, source: str = "http") -> Routed:
    now = datetime.now(UTC)
    return Routed(event_id="e1", source=source, routes=routes, commands=[], at=now, error=error)


def outcome(status: str, duration_ms: float = 12.0) -> Outcome:
    now = datetime.now(UTC)
    return Outcome(
        event_id="e1",
        command_id="c1",
        route="r",
        action="a",
        type="exec",
        status=status,
        attempt=1,
        started_at=now,
        finished_at=now,
        duration_ms=duration_ms,
    )


def test_each_app_owns_its_registry() -> None:
    first, second = metrics.Metrics(), metrics.Metrics()
    first.routed(routed(["r"]))
    assert samples(first)[("postee_events_routed_total", (("result", "matched"),))] == 1
    assert ("postee_events_routed_total", (("result", "matched"),)) not in samples(second)


def test_counts_by_bounded_labels() -> None:
    m = metrics.Metrics()
    m.routed(routed(["r"]))
    m.routed(routed([]))
    m.routed(routed([], error="rule evaluation failed", source="forged-source"))
    m.outcome(outcome("succeeded"))
    m.attempt(outcome("succeeded", 250.0))
    m.dlq(DlqRecord.for_bytes(b"x", stage="decode", reason="not JSON"))
    got = samples(m)
    assert got[("postee_events_received_total", (("source", "http"),))] == 2
    assert got[("postee_events_received_total", (("source", "other"),))] == 1
    for result in ("matched", "unmatched", "failed"):
        assert got[("postee_events_routed_total", (("result", result),))] == 1
    assert got[("postee_outcomes_total", (("status", "succeeded"), ("type", "exec")))] == 1
    assert got[("postee_dlq_records_total", (("stage", "decode"),))] == 1
    assert got[("postee_action_duration_seconds_count", (("type", "exec"),))] == 1
    assert got[("postee_action_duration_seconds_sum", (("type", "exec"),))] == 0.25


def test_a_failing_lag_source_never_fails_the_scrape() -> None:
    m = metrics.Metrics()

    def broken():  # type: ignore[no-untyped-def]
        raise RuntimeError("consumer in a rebalance")
        yield

    m.watch_lag(broken)
    assert b"postee_consumer_lag" in m.exposition()


def test_json_lines_carry_ids_and_exceptions() -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord(
        "streams.executor", logging.WARNING, __file__, 1, "refused %s", ("c1",), None
    )
    record.event_id, record.command_id = "e1", "c1"
    line = json.loads(formatter.format(record))
    assert line["level"] == "warning" and line["logger"] == "streams.executor"
    assert line["message"] == "refused c1"
    assert (line["event_id"], line["command_id"]) == ("e1", "c1")
    datetime.fromisoformat(line["time"])
    try:
        raise ValueError("bad\nmultiline ü")
    except ValueError:
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", (), sys.exc_info())
    line = json.loads(formatter.format(failed))
    assert "ValueError: bad" in line["exception"] and "event_id" not in line
    assert "\n" not in formatter.format(failed)  # one line per record


def test_log_format_setting() -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"POSTEE_LOG_FORMAT": "JSON"}).log_format == "json"
    with pytest.raises(ConfigError, match="POSTEE_LOG_FORMAT"):
        Settings.from_env({"POSTEE_LOG_FORMAT": "xml"})


def test_dashboard_and_alerts_use_metrics_that_exist() -> None:
    m = metrics.Metrics()
    m.watch_lag(lambda: iter([("t", 1)]))
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    names = {f.name + x for f in m.registry.collect() for x in suffixes[f.type]}
    dashboard = json.loads((REPO / "deploy" / "grafana" / "postee-streams.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    chart = REPO / "deploy" / "helm" / "postee-streams" / "templates" / "prometheusrule.yaml"
    used_by_dashboard = set(re.findall(r"postee_[a-z_]+", exprs))
    used_by_alerts = set(re.findall(r"postee_[a-z_]+", chart.read_text()))
    assert used_by_dashboard <= names, used_by_dashboard - names
    assert used_by_alerts <= names, used_by_alerts - names
    # Every metric has a panel.
    assert {n.removesuffix("_bucket") for n in used_by_dashboard} >= {
        n for n in names if not n.endswith(("_count", "_sum", "_bucket"))
    } | {n.removesuffix("_bucket") for n in names if n.endswith("_bucket")}
