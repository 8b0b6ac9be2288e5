"""`runs-on`: the config key (upstream's), the commands' place, the runner's own config."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from streams import config, records, trust
from streams.app import create_app
from streams.errors import ConfigError
from streams.rules import RouteMatcher
from streams.settings import Settings, check_runner_name
from tests.unit.engine_support import decide, evaluator_of

REPO = Path(__file__).resolve().parents[2]

#: The shape of upstream's controller/runner example (its `stdout` action left out).
UPSTREAM = """
name: Postee Controller Runner Demo
routes:
- name: runner-only-route
  input: contains(input.SigMetadata.ID, "TRC-1")
  serialize-actions: true
  actions: [my-exec-from-runner, my-http-post-from-runner]
- name: controller-runner-route
  input: contains(input.SigMetadata.ID, "TRC-2")
  actions: [my-exec-from-runner, my-http-post-from-controller]
actions:
- name: my-http-post-from-controller
  type: http
  enable: true
  url: "https://webhook.example/x"
  method: POST
- name: my-exec-from-runner
  runs-on: "postee-runner-1"
  type: exec
  enable: true
  env: ["MY_ENV_VAR=foo_bar_baz"]
  exec-script: |
    #!/bin/sh
    echo $POSTEE_EVENT
- name: my-http-post-from-runner
  runs-on: "postee-runner-1"
  type: http
  enable: true
  url: "https://webhook.example/y"
  method: POST
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def event(payload: dict) -> records.IncomingEvent:
    return records.IncomingEvent(event_id="e1", payload=payload, source="http", received_at=None)


def test_upstream_runs_on_loads_without_warnings(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        cfg = config.load(write(tmp_path, UPSTREAM))
    assert caplog.records == []
    assert cfg.actions["my-exec-from-runner"].runs_on == "postee-runner-1"
    assert "runs-on" not in cfg.actions["my-exec-from-runner"].params
    assert cfg.actions["my-http-post-from-controller"].runs_on is None


def test_a_runner_name_must_fit_in_a_topic_name(tmp_path):
    path = write(tmp_path, UPSTREAM.replace('"postee-runner-1"', '"node a/1"', 1))
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    (error,) = caught.value.errors  # type: ignore[attr-defined]
    assert "action 'my-exec-from-runner'" in error.describe() and "runs-on" in error.describe()
    with pytest.raises(ConfigError):
        check_runner_name("node a/1")
    assert check_runner_name("ip-10-0-1-7.eu-west-1.compute.internal")


def test_a_runner_reads_actions_only(tmp_path):
    text = UPSTREAM.replace(
        'input: contains(input.SigMetadata.ID, "TRC-1")', "input-files: [not-on-this-node.rego]"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError):
        config.load(path, tmp_path)  # a worker needs the route's Rego file
    cfg = config.load(path, tmp_path, with_routes=False)
    assert cfg.routes == () and len(cfg.actions) == 3


def test_commands_carry_the_runner_of_their_action(tmp_path):
    cfg = config.load(write(tmp_path, UPSTREAM))
    matcher = evaluator_of(cfg)
    decision = decide(event({"SigMetadata": {"ID": "TRC-1 TRC-2"}}), cfg, matcher)
    chained, *plain = decision.commands
    assert (chained.action, chained.runs_on) == ("my-exec-from-runner", "postee-runner-1")
    assert [(c.action, c.runs_on) for c in chained.then] == [
        ("my-http-post-from-runner", "postee-runner-1")
    ]
    assert [(c.action, c.runs_on) for c in plain] == [
        ("my-exec-from-runner", "postee-runner-1"),
        ("my-http-post-from-controller", None),
    ]
    assert [r.runs_on for r in decision.routed.commands] == [
        "postee-runner-1",
        "postee-runner-1",
        "postee-runner-1",
        None,
    ]
    assert records.schema_errors("command", chained.to_dict()) == []
    assert records.schema_errors("routed", decision.routed.to_dict()) == []
    assert records.decode_command(chained.to_json()) == chained


def test_runs_on_can_name_the_runner_from_the_event(tmp_path):
    text = UPSTREAM.replace('runs-on: "postee-runner-1"', "runs-on: event.input.node", 1)
    cfg = config.load(write(tmp_path, text))
    matcher = evaluator_of(cfg)
    alert = {"SigMetadata": {"ID": "TRC-2"}}
    here = decide(event({**alert, "node": "ip-10-0-1-7"}), cfg, matcher).commands[0]
    assert (here.runs_on, here.template_error) == ("ip-10-0-1-7", None)
    for node in (None, "no/such node"):
        payload = {**alert, "node": node} if node else alert
        nowhere = decide(event(payload), cfg, matcher).commands[0]
        assert nowhere.runs_on is None  # fails in a worker, runs nowhere
        assert "the event names no runner" in str(nowhere.template_error)


def test_the_publisher_picks_the_topic_from_the_command(tmp_path):
    cfg = config.load(write(tmp_path, UPSTREAM))
    settings = Settings.from_env({"POSTEE_TOPIC_PREFIX": "p", "POSTEE_DATA_DIR": str(tmp_path)})
    app = create_app(settings, cfg, RouteMatcher.compile([r.as_rule() for r in cfg.routes]))
    decision = decide(event({"SigMetadata": {"ID": "TRC-2"}}), cfg, evaluator_of(cfg))
    to_runner, to_worker = (app.publisher.command(c) for c in decision.commands)
    assert to_runner.topic.get_topic_name() == "p.runner.postee-runner-1"
    assert to_worker.topic.get_topic_name() == "p.actions.http"
    assert to_runner.key == "e1"
    assert app.postee_topics.runner_spec("postee-runner-1").partitions == 1


def test_a_runner_runs_actions_as_its_own_config_defines_them(tmp_path):
    cfg = config.load(write(tmp_path, UPSTREAM))
    matcher = evaluator_of(cfg)
    command = decide(event({"SigMetadata": {"ID": "TRC-2"}}), cfg, matcher).commands[0]
    local = write(tmp_path, UPSTREAM.replace("foo_bar_baz", "on-this-node"), "runner.yaml")
    runner_cfg = config.load(local, with_routes=False)
    spec, refusal = trust.configured_action(runner_cfg, "exec", command, "postee-runner-1")
    assert refusal is None and spec is not None
    assert spec.params["env"] == ["MY_ENV_VAR=on-this-node"]
    unknown = replace(command, action="not-here")
    spec, refusal = trust.configured_action(runner_cfg, "exec", unknown, "postee-runner-1")
    assert spec is None and "runner 'postee-runner-1' has no exec action 'not-here'" in str(refusal)
    # A worker does not run an action meant for a runner, whoever wrote the command.
    spec, refusal = trust.configured_action(cfg, "exec", command)
    assert spec is None and "runs on a runner (runs-on: postee-runner-1)" in str(refusal)


def test_a_runner_has_a_consumer_group_of_its_own():
    assert Settings(runner_name="node-a").app_id == "postee-runner-node-a"
    assert Settings().app_id == "postee-streams"


def test_runner_with_a_bad_name_fails_before_connecting(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "streams", "runner", "--name", "no spaces"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "POSTEE_CFG": str(write(tmp_path, UPSTREAM))},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "a runner name takes letters" in done.stderr
