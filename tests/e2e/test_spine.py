"""Webhook → Kafka → Rego routes → exec action → outcomes, on the real broker."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from streams.records import schema_errors
from tests.kafka_support import Worker, produce, start_worker, value

pytestmark = pytest.mark.kafka


def write_config(directory: Path) -> Path:
    """Routes keyed on a `test` field (plus the Tracee TRC-2 route), each to an exec action."""
    forensic_log = directory / "forensics.log"
    order_log = directory / "order.log"
    config = directory / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: tracee-trc2
            input: input.SigMetadata.ID == "TRC-2"
            actions: [save-forensic-log]
          - name: exit-three
            input: input.test == "exit3"
            actions: [exit-three]
          - name: too-slow
            input: input.test == "slow"
            actions: [too-slow]
          - name: metachars
            input: input.test == "meta"
            actions: [save-forensic-log]
          - name: large
            input: input.test == "large"
            actions: [measure-event]
          - name: templated
            input: input.SigMetadata.ID == "TRC-7"
            template: tracee
            actions: [echo-event]
          - name: template-cannot-render
            input: input.test == "untemplatable"
            template: needs-id
            actions: [echo-event]
          - name: in-order
            input: input.test == "order"
            serialize-actions: true
            actions: [first-slow, second-fast]
        templates:
          - name: tracee
            rego-package: postee.tracee
          - name: needs-id
            body: |
              package custom.needsid
              import rego.v1
              title := input.id
              result := "has an id"
        actions:
          - name: echo-event
            type: exec
            enable: true
            exec-script: printf '%s' "$POSTEE_EVENT"
          - name: save-forensic-log
            type: exec
            enable: true
            env: [FORENSIC_LOG={forensic_log}]
            exec-script: |
              printf '%s\\n' "$POSTEE_EVENT" >> "$FORENSIC_LOG"
          - name: exit-three
            type: exec
            enable: true
            exec-script: echo about to fail >&2; exit 3
          - name: too-slow
            type: exec
            enable: true
            timeout: 1s
            exec-script: sleep 30
          - name: measure-event
            type: exec
            enable: true
            exec-script: |
              printf 'env=%s file=%s' "${{#POSTEE_EVENT}}" "$(wc -c < "$POSTEE_EVENT_FILE")"
          - name: first-slow
            type: exec
            enable: true
            env: [ORDER_LOG={order_log}]
            exec-script: sleep 0.5; echo first >> "$ORDER_LOG"
          - name: second-fast
            type: exec
            enable: true
            env: [ORDER_LOG={order_log}]
            exec-script: echo second >> "$ORDER_LOG"
    """)
    )
    return config


@pytest.fixture(scope="module")
def worker(bootstrap: str, module_tmp: Path, log_dir: Path) -> Iterator[Worker]:
    handle = start_worker(bootstrap, write_config(module_tmp), log_dir, "spine")
    yield handle
    handle.stop()


def post(worker: Worker, body: bytes | dict[str, Any], path: str = "/") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(worker.base_url + path, content=content, timeout=10)


def assert_valid(kind: str, record: dict[str, Any]) -> None:
    assert schema_errors(kind, record) == [], record


def is_outcome(event_id: str, final: bool = True) -> Any:
    return lambda m: (
        (v := value(m))["kind"] == "outcome"
        and v["event_id"] == event_id
        and (v["final"] or not final)
    )


def is_routed(event_id: str) -> Any:
    return lambda m: (v := value(m))["kind"] == "routed" and v["event_id"] == event_id


async def test_trc2_post_runs_exec_and_records_outcome(worker, reader_factory, samples, module_tmp):
    event = json.loads((samples / "tracee" / "trc-2-anti-debugging.json").read_text())
    event["marker"] = uuid.uuid4().hex
    response = post(worker, event)
    assert response.status_code == 202, response.text
    event_id = response.json()["id"]

    outcomes = await reader_factory(worker.topic("outcomes"))
    (routed,) = await outcomes.wait_for(is_routed(event_id))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    routed_value, outcome_value = value(routed), value(outcome)
    assert_valid("routed", routed_value)
    assert_valid("outcome", outcome_value)
    assert routed_value["routes"] == ["tracee-trc2"]
    assert [c["command_id"] for c in routed_value["commands"]] == [outcome_value["command_id"]]
    assert outcome_value["status"] == "succeeded", outcome_value
    assert outcome_value["detail"]["exit_code"] == 0
    assert routed.key == outcome.key == event_id.encode()

    logged = [json.loads(line) for line in (module_tmp / "forensics.log").read_text().splitlines()]
    assert event in logged  # the whole event, unchanged, reached the script

    commands = await reader_factory(worker.topic("actions.exec"))
    (command,) = await commands.wait_for(
        lambda m: value(m)["command_id"] == outcome_value["command_id"]
    )
    assert_valid("command", value(command))
    assert value(command)["event"] == event

    stored = await reader_factory(worker.topic("events"))
    (record,) = await stored.wait_for(lambda m: m.key == event_id.encode())
    assert record.value == json.dumps(event).encode()  # stored as received
    headers = {k: v.decode() for k, v in record.headers}
    jsonschema.validate(
        headers, json.loads((Path("schemas") / "event-headers.schema.json").read_text())
    )
    assert headers["postee-event-id"] == event_id and headers["postee-source"] == "http"


async def test_non_matching_event_is_routed_nowhere(worker, reader_factory):
    response = post(worker, {"test": "nothing-matches", "n": 1})
    event_id = response.json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (routed,) = await outcomes.wait_for(is_routed(event_id))
    assert value(routed)["routes"] == [] and value(routed)["commands"] == []
    # A later event's outcome proves the agent moved past it without issuing a command.
    later = post(worker, {"test": "exit3"}).json()["id"]
    await outcomes.wait_for(is_outcome(later))
    assert not [
        m
        for m in outcomes.seen
        if value(m).get("kind") == "outcome" and value(m)["event_id"] == event_id
    ]


async def test_direct_produce_without_headers_is_routed_and_executed(
    worker, reader_factory, samples, bootstrap, module_tmp
):
    event = json.loads((samples / "tracee" / "trc-2-anti-debugging.json").read_text())
    marker = uuid.uuid4().hex
    event["marker"] = marker
    await produce(bootstrap, worker.topic("events"), json.dumps(event).encode())
    outcomes = await reader_factory(worker.topic("outcomes"))
    (routed,) = await outcomes.wait_for(
        lambda m: (
            value(m)["kind"] == "routed"
            and value(m)["source"] == "kafka"
            and value(m)["routes"] == ["tracee-trc2"]
        )
    )
    event_id = value(routed)["event_id"]
    assert event_id.startswith(worker.topic("events") + ":")  # derived from partition and offset
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    assert value(outcome)["status"] == "succeeded"
    assert marker in (module_tmp / "forensics.log").read_text()


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"this is not json", 400, "not JSON"),
        (b"[1, 2, 3]", 400, "must be a JSON object"),
        (b"", 400, "empty"),
        (b'{"a": NaN}', 400, "NaN"),
        (b"\xff\xfe{}", 400, "UTF-8"),
    ],
)
async def test_bad_bodies_are_refused(worker, body, status, reason):
    response = post(worker, body)
    assert response.status_code == status
    assert reason in response.json()["error"]


async def test_oversized_body_is_refused(worker):
    body = json.dumps({"padding": "x" * (1024 * 1024)}).encode()
    response = post(worker, body)
    assert response.status_code == 413
    assert "limit" in response.json()["error"]


async def test_refused_bodies_never_reach_the_events_topic(worker, reader_factory):
    refused = [
        b"not json",
        b"[1]",
        b"",
        b'{"a": Infinity}',
        json.dumps({"p": "y" * 1_100_000}).encode(),
    ]
    for body in refused:
        assert post(worker, body).status_code in (400, 413)
    marker_id = post(worker, {"test": "marker-after-refusals"}).json()["id"]
    events = await reader_factory(worker.topic("events"))
    stored = await events.drain_until(lambda m: m.key == marker_id.encode())
    assert not [m for m in stored if m.value in refused]


async def test_garbage_on_events_topic_goes_to_dlq_and_next_event_runs(
    worker, reader_factory, bootstrap
):
    garbage = b"\x00\x9f garbage {{{"
    await produce(bootstrap, worker.topic("events"), garbage)
    await produce(
        bootstrap,
        worker.topic("events"),
        json.dumps({"test": "exit3", "after": "garbage"}).encode(),
    )
    dlq = await reader_factory(worker.topic("dlq"))
    (record,) = await dlq.wait_for(
        lambda m: value(m)["stage"] == "decode" and value(m)["encoding"] == "base64"
    )
    assert_valid("dlq", value(record))
    assert "UTF-8" in value(record)["reason"]
    assert value(record)["topic"] == worker.topic("events")
    outcomes = await reader_factory(worker.topic("outcomes"))
    await outcomes.wait_for(
        lambda m: (
            value(m)["kind"] == "routed"
            and value(m)["source"] == "kafka"
            and value(m)["routes"] == ["exit-three"]
        )
    )


async def test_script_exit_code_is_a_failed_outcome(worker, reader_factory):
    event_id = post(worker, {"test": "exit3"}).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    v = value(outcome)
    assert_valid("outcome", v)
    assert v["status"] == "failed" and v["detail"]["exit_code"] == 3
    assert "about to fail" in v["detail"]["stderr"]
    assert "code 3" in v["error"]


async def test_script_past_its_timeout_is_killed(worker, reader_factory):
    event_id = post(worker, {"test": "slow"}).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    v = value(outcome)
    assert v["status"] == "failed" and v["detail"]["timed_out"] is True
    assert "timed out after 1s" in v["error"]
    assert v["duration_ms"] < 10_000  # killed at its timeout, not after `sleep 30`


async def test_shell_metacharacters_in_events_are_never_executed(
    worker, reader_factory, tmp_path, module_tmp
):
    canary = tmp_path / "pwned"
    payloads = [
        f"$(touch {canary})",
        f"`touch {canary}`",
        f"'; touch {canary}; '",
        f'"; touch {canary}; "',
        f"\n touch {canary}",
    ]
    event = {"test": "meta", "payloads": payloads, f"$(touch {canary})": "key too"}
    event_id = post(worker, event).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    assert value(outcome)["status"] == "succeeded"
    assert not canary.exists()
    assert event in [
        json.loads(line) for line in (module_tmp / "forensics.log").read_text().splitlines()
    ]


async def test_event_over_the_environment_limit_still_runs(worker, reader_factory):
    # 200 KB in strings the rule engine accepts (each under POSTEE_MAX_STRING_BYTES).
    event = {"test": "large", "blob": ["z" * 1000] * 200}
    event_id = post(worker, event).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    v = value(outcome)
    assert v["status"] == "succeeded", v
    size = len(json.dumps(event).encode())
    assert (
        v["detail"]["stdout"] == f"env=0 file={size}"
    )  # too big for the environment, whole in the file


async def test_serialized_actions_run_in_order(worker, reader_factory, module_tmp):
    event_id = post(worker, {"test": "order"}).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    first, second = sorted(
        (value(m) for m in await outcomes.wait_for(is_outcome(event_id), count=2)),
        key=lambda v: v["started_at"],
    )
    assert (first["action"], second["action"]) == ("first-slow", "second-fast")
    assert second["started_at"] >= first["finished_at"]
    assert (module_tmp / "order.log").read_text().splitlines()[-2:] == ["first", "second"]
    (routed,) = await outcomes.wait_for(is_routed(event_id))
    assert [c["queued"] for c in value(routed)["commands"]] == [False, True]


async def test_tenant_endpoint_evaluates_one_route(worker, reader_factory):
    both = {"test": "exit3", "SigMetadata": {"ID": "TRC-2"}}
    response = post(worker, both, path="/tenant/exit-three")
    assert response.status_code == 202
    outcomes = await reader_factory(worker.topic("outcomes"))
    (routed,) = await outcomes.wait_for(is_routed(response.json()["id"]))
    assert value(routed)["routes"] == ["exit-three"]
    unknown = post(worker, both, path="/tenant/no-such-route")
    assert unknown.status_code == 404 and "no-such-route" in unknown.json()["error"]


async def test_ping_and_healthz(worker):
    assert httpx.get(worker.base_url + "/ping").status_code == 200
    health = httpx.get(worker.base_url + "/healthz")
    assert health.status_code == 200 and health.json() == {"broker": "ok"}


async def test_templated_route_gives_the_rendered_description(worker, reader_factory, samples):
    event = json.loads((samples / "tracee" / "trc-7-ld-preload.json").read_text())
    event_id = post(worker, event).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    golden = (Path("tests/golden/postee.tracee/trc-7-ld-preload.txt")).read_text()
    description = golden.split("---\n", 1)[1].removesuffix("\n")
    assert value(outcome)["status"] == "succeeded"
    assert value(outcome)["detail"]["stdout"] == description
    commands = await reader_factory(worker.topic("actions.exec"))
    (command,) = await commands.wait_for(lambda m: value(m)["event_id"] == event_id)
    assert value(command)["template"]["title"] == golden.splitlines()[0].removeprefix("title: ")


async def test_template_that_cannot_render_fails_the_command_only(worker, reader_factory):
    event_id = post(worker, {"test": "untemplatable"}).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (outcome,) = await outcomes.wait_for(is_outcome(event_id))
    v = value(outcome)
    assert v["status"] == "failed" and "template 'needs-id'" in v["error"] and "title" in v["error"]
    later = post(worker, {"test": "exit3"}).json()["id"]  # the worker goes on
    await outcomes.wait_for(is_outcome(later))


async def test_a_redelivered_finished_command_is_skipped(
    worker, reader_factory, bootstrap, module_tmp
):
    event = {"test": "meta", "payloads": ["redelivery"], "marker": uuid.uuid4().hex}
    event_id = post(worker, event).json()["id"]
    outcomes = await reader_factory(worker.topic("outcomes"))
    (first,) = await outcomes.wait_for(is_outcome(event_id))
    commands = await reader_factory(worker.topic("actions.exec"))
    (command,) = await commands.wait_for(lambda m: value(m)["event_id"] == event_id)
    lines_before = (module_tmp / "forensics.log").read_text().count(event["marker"])
    await produce(bootstrap, worker.topic("actions.exec"), command.value, key=command.key)
    both = await outcomes.wait_for(is_outcome(event_id), count=2)
    again = value(both[1])
    assert again["status"] == "skipped" and again["command_id"] == value(first)["command_id"]
    assert again["detail"]["first_status"] == "succeeded"
    assert schema_errors("outcome", again) == []
    assert (module_tmp / "forensics.log").read_text().count(event["marker"]) == lines_before == 1
