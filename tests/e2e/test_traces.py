"""Traces end to end: one alert is one trace, and a replay of it links to it.

A worker with traces on exports OTLP over HTTP to a real receiver on 127.0.0.1
(tests/otlp_support.py), which decodes the protobuf export requests. One alert POSTed to
a serialized route of two exec actions gives one trace: the bridge's server span, the
router's span under it, and both attempt spans under that. `postee replay` then starts a
new trace whose root links to the original bridge span.
"""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.kafka_support import outcomes_of, post_event, start_worker, value
from tests.otlp_support import ReceivedSpan, otlp_receiver

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(300)]

SERVER, PRODUCER, CONSUMER = 2, 4, 5  #: the proto's SpanKind values
ERROR = 2  #: the proto's StatusCode.STATUS_CODE_ERROR
SENDER_TRACE, SENDER_SPAN = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"


def write_config(directory: Path) -> Path:
    config = directory / "cfg.yaml"
    config.write_text(
        textwrap.dedent("""
        routes:
          - name: two-steps
            input: input.alert != ""
            serialize-actions: true
            actions: [first, second]
        actions:
          - name: first
            type: exec
            enable: true
            exec-script: "true"
          - name: second
            type: exec
            enable: true
            exec-script: "true"
        """)
    )
    return config


def of_event(event_id: str, name: str) -> object:
    return lambda s: s.attributes.get("postee.event.id") == event_id and s.name == name


def only(spans: list[ReceivedSpan]) -> ReceivedSpan:
    assert len(spans) == 1, spans
    return spans[0]


async def test_one_alert_is_one_trace_and_its_replay_links_to_it(
    bootstrap, log_dir, module_tmp, reader_factory
):
    with otlp_receiver() as receiver:
        traces_on = {
            "POSTEE_OTEL": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans leave within a poll or two
        }
        worker = start_worker(bootstrap, write_config(module_tmp), log_dir, "traces", traces_on)
        try:
            window_start = datetime.now(UTC)
            event_id = post_event(worker, {"alert": "one"})
            sender = {"traceparent": f"00-{SENDER_TRACE}-{SENDER_SPAN}-01"}
            response = httpx.post(worker.base_url + "/", json={"alert": "two"}, headers=sender)
            assert response.status_code == 202, response.text
            second_id = response.json()["id"]
            outcomes = await reader_factory(worker.topic("outcomes"))
            await outcomes.wait_for(outcomes_of(event_id), count=2)

            def wait(predicate: object, count: int = 1) -> list[ReceivedSpan]:
                return receiver.wait_for(predicate, count)  # type: ignore[arg-type]

            attempts = await asyncio.to_thread(wait, of_event(event_id, "action exec"), 2)
            bridge = only(await asyncio.to_thread(wait, of_event(event_id, "POST /")))
            route = only(await asyncio.to_thread(wait, of_event(event_id, "route event")))

            # One trace: bridge (root, server) -> routing (consumer) -> both attempts.
            assert bridge.kind == SERVER and bridge.parent_span_id == ""
            assert bridge.attributes["http.route"] == "/"
            assert bridge.attributes["http.response.status_code"] == 202
            assert route.kind == CONSUMER and route.trace_id == bridge.trace_id
            assert route.parent_span_id == bridge.span_id
            assert route.attributes["postee.routes"] == ["two-steps"]
            assert route.attributes["postee.config.version"]
            assert {a.trace_id for a in attempts} == {bridge.trace_id}
            assert {a.parent_span_id for a in attempts} == {route.span_id}
            assert sorted(a.attributes["postee.action.name"] for a in attempts) == [
                "first",
                "second",
            ]
            for a in attempts:
                assert a.attributes["postee.action.type"] == "exec"
                assert a.attributes["postee.status"] == "succeeded"
                assert a.attributes["postee.attempt"] == 1 and a.status_code != ERROR
            for span in (bridge, route, *attempts):
                assert span.resource["service.name"] == "postee-streams"
                assert not {"alert", "one"} & {str(v) for v in span.attributes.values()}

            # The event record carries the bridge span's context in its headers.
            events = await reader_factory(worker.topic("events"))
            record = only(await events.wait_for(lambda m: m.key.decode() == event_id))
            traceparent = dict(record.headers)["traceparent"].decode()
            assert traceparent.startswith(f"00-{bridge.trace_id}-{bridge.span_id}-")

            # The sender's traceparent is honoured: its trace, under its span.
            sent = only(await asyncio.to_thread(wait, of_event(second_id, "POST /")))
            assert (sent.trace_id, sent.parent_span_id) == (SENDER_TRACE, SENDER_SPAN)
            routed = only(await asyncio.to_thread(wait, of_event(second_id, "route event")))
            assert routed.trace_id == SENDER_TRACE and routed.parent_span_id == sent.span_id

            # A replay: a new trace, its root linked to the original's bridge span.
            window = ["--from", window_start.isoformat(), "--to", "now"]
            replayed = await worker.cli_async("replay", *window, extra_env=traces_on)
            assert replayed.returncode == 0, replayed.stderr + replayed.stdout
            root = only(await asyncio.to_thread(wait, of_event(event_id, "replay event")))
            assert root.kind == PRODUCER and root.parent_span_id == ""
            assert root.trace_id != bridge.trace_id
            assert root.links == [(bridge.trace_id, bridge.span_id)]
            assert root.resource["service.name"] == "postee-streams"

            def in_replay(name: str) -> object:
                return lambda s: of_event(event_id, name)(s) and s.trace_id == root.trace_id

            again = only(await asyncio.to_thread(wait, in_replay("route event")))
            assert again.parent_span_id == root.span_id
            assert again.attributes["postee.replay.id"] == root.attributes["postee.replay.id"]
            dry = await asyncio.to_thread(wait, in_replay("action exec"), 2)
            assert {a.parent_span_id for a in dry} == {again.span_id}
            assert {a.attributes["postee.status"] for a in dry} == {"dry_run"}
            final = await outcomes.wait_for(
                lambda m: outcomes_of(event_id)(m) and value(m)["status"] == "dry_run", count=2
            )
            assert len(final) == 2
        finally:
            worker.stop()
