"""Traces are off by default: no header is added, nothing is exported, nothing imported.

The subprocess tests run the real code paths (the Publisher's messages, the routing and
attempt spans, the replay's root) against a real OTLP receiver, once with traces off
and once on: the second run proves the receiver would have seen what the first did not
send.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from streams import records, tracing
from streams.errors import ConfigError
from streams.outcomes import Publisher
from streams.settings import Settings
from tests.kafka_support import REPO
from tests.otlp_support import otlp_receiver

EXERCISE = textwrap.dedent("""
    import json, sys
    from types import SimpleNamespace
    from streams import records, tracing
    from streams.outcomes import Publisher
    from streams.settings import Settings

    runner = sys.argv[1] if len(sys.argv) > 1 else None  # as `postee runner --name` sets it
    tracing.setup(Settings.from_env().with_overrides(runner_name=runner))
    command = records.Command("c1", "e1", "r", "a", "exec", "v1", {}, "t")
    publisher = Publisher(SimpleNamespace(actions={"exec": "p.actions.exec"}), 10_000)
    with tracing.routing([], "v1") as span:
        span.set("postee.event.id", "e1")
        message = publisher.command(command)
        batch = tracing.remember({"batch_id": "b1", "route": "r"})
    with tracing.batch(batch):
        pass
    with tracing.within(message.headers), tracing.attempt(command, 1, runner) as span:
        span.status("failed", True)
    with tracing.replay("e1", "r1", "dry-run", message.headers):
        headers = tracing.inject([("postee-event-id", b"e1")])
    tracing.shutdown()
    print(json.dumps({
        "command_headers": [k for k, _ in message.headers or ()],
        "replay_headers": [k for k, _ in headers],
        "imported": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    }))
""")


def exercise(environ: dict[str, str], *args: str) -> dict[str, list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTEE_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", EXERCISE, *args],
        cwd=REPO,
        env={**env, **environ},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, list[str]] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_off_adds_no_header_exports_nothing_and_imports_no_opentelemetry():
    with otlp_receiver() as receiver:
        # An endpoint alone would turn traces on; POSTEE_OTEL=0 keeps them off.
        off = exercise({"POSTEE_OTEL": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert off == {
            "command_headers": [],
            "replay_headers": ["postee-event-id"],
            "imported": [],
        }
        assert receiver.requests == 0 and receiver.spans == []

        on = exercise({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint}, "node-1")
        assert on["command_headers"] == ["traceparent"]
        assert on["replay_headers"] == ["postee-event-id", "traceparent"]
        spans = {s.name: s for s in receiver.wait_for(lambda s: True, count=4)}
        assert sorted(spans) == ["action exec", "close batch", "replay event", "route event"]
        route, attempt = spans["route event"], spans["action exec"]
        assert attempt.parent_span_id == route.span_id and attempt.status_code == 2  # failed
        assert attempt.attributes["postee.runner.name"] == "node-1"
        assert {s.resource["service.name"] for s in spans.values()} == {"postee-streams"}
        assert {s.resource["postee.runner.name"] for s in spans.values()} == {"node-1"}
        # A closed batch and a replay start traces of their own, linked to where they came from.
        for name in ("close batch", "replay event"):
            assert spans[name].parent_span_id == "" and spans[name].trace_id != route.trace_id
            assert spans[name].links == [(route.trace_id, route.span_id)]


def test_off_in_process_messages_have_no_headers():
    assert not tracing.enabled()  # nothing in the test process sets traces up
    publisher = Publisher(SimpleNamespace(outcomes="p.outcomes"), 10_000)  # type: ignore[arg-type]
    routed = records.Routed("e1", "http", [], [], records.utc_now())
    with tracing.routing([("traceparent", b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01")], "v"):
        assert publisher.routed(routed).headers is None
    given = [("postee-event-id", b"e1")]
    assert tracing.inject(given) is given and tracing.middlewares() == []


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, False),
        ({"POSTEE_OTEL": "1"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"POSTEE_OTEL": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_settings_turn_traces_on(environ, enabled):
    assert Settings.from_env(environ).traces.enabled is enabled


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        (
            {"POSTEE_OTEL": "1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"POSTEE_OTEL": "maybe"}, "POSTEE_OTEL"),
    ],
)
def test_bad_trace_settings_name_the_variable(environ, key):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(environ)
    assert caught.value.key == key
