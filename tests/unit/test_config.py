"""Loading cfg.yaml: upstream semantics, and errors that name file, place and key."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from streams import config
from streams.errors import ConfigError, ConfigErrors

REPO = Path(__file__).resolve().parents[2]

GOOD = """
name: test
routes:
  - name: trc2
    input: input.SigMetadata.ID == "TRC-2"
    actions: [save]
    serialize-actions: true
    plugins:
      unique-message-props: [SigMetadata.ID]
      unique-message-timeout: 2h
      aggregate-message-timeout: 90
templates:
  - name: raw
    rego-package: postee.rawmessage.json
actions:
  - name: save
    type: Exec
    enable: true
    env: [A=1, B=two=2]
    exec-script: echo hi
"""


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def errors_of(path: Path, filters: Path | None = None) -> list[ConfigError]:
    with pytest.raises(ConfigError) as caught:
        config.load(path, filters or path.parent)
    err = caught.value
    return err.errors if isinstance(err, ConfigErrors) else [err]


def test_loads_upstream_keys(tmp_path):
    cfg = config.load(write(tmp_path, GOOD))
    (route,) = cfg.routes
    assert route.name == "trc2" and route.actions == ("save",) and route.serialize_actions
    assert route.plugins.unique_message_props == ("SigMetadata.ID",)
    assert route.plugins.unique_message_timeout_s == 7200
    assert route.plugins.aggregate_message_timeout_s == 90
    action = cfg.actions["save"]
    assert action.type == "exec" and action.enable  # type compared case-insensitively
    assert action.params["env"] == ["A=1", "B=two=2"]
    assert cfg.templates["raw"].rego_package == "postee.rawmessage.json"


def test_older_outputs_key_is_read(tmp_path):
    text = GOOD.replace("actions:\n  - name: save", "outputs:\n  - name: save")
    cfg = config.load(write(tmp_path, text))
    assert "save" in cfg.actions


def test_route_naming_a_missing_action(tmp_path):
    path = write(tmp_path, GOOD.replace("actions: [save]", "actions: [save, nope]"))
    (err,) = errors_of(path)
    assert err.file == str(path) and err.where == "route 'trc2'" and err.key == "actions"
    assert "'nope'" in err.message


def test_missing_input_file(tmp_path):
    path = write(
        tmp_path,
        GOOD.replace('input: input.SigMetadata.ID == "TRC-2"', "input-files: [absent.rego]"),
    )
    (err,) = errors_of(path, tmp_path / "filters")
    assert err.where == "route 'trc2'" and err.key == "input-files"
    assert "absent.rego" in err.message


def test_schema_errors_are_located_and_all_reported(tmp_path):
    text = GOOD.replace("enable: true", "enable: maybe").replace(
        "serialize-actions: true", "serialize-actions: 3"
    )
    errs = errors_of(write(tmp_path, text))
    places = {(e.where, e.key) for e in errs}
    assert ("action 'save'", "enable") in places
    assert ("route 'trc2'", "serialize-actions") in places


def test_exec_needs_a_script(tmp_path):
    (err,) = errors_of(write(tmp_path, GOOD.replace("exec-script: echo hi", "shell: echo hi")))
    assert err.where == "action 'save'" and "input-file" in err.message


def test_unsupported_action_type(tmp_path):
    (err,) = errors_of(write(tmp_path, GOOD.replace("type: Exec", "type: carrier-pigeon")))
    assert err.where == "action 'save'" and err.key == "type" and "carrier-pigeon" in err.message


def test_bad_env_entry(tmp_path):
    (err,) = errors_of(write(tmp_path, GOOD.replace("env: [A=1, B=two=2]", "env: [NOEQUALS]")))
    assert err.where == "action 'save'" and err.key == "env.0"


def test_duplicate_names(tmp_path):
    text = GOOD.replace("routes:\n", "routes:\n  - name: trc2\n    actions: [save]\n")
    (err,) = errors_of(write(tmp_path, text))
    assert err.where == "route 'trc2'" and "twice" in err.message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    (err,) = errors_of(write(tmp_path, "routes: [\n  - name: x\n"))
    assert err.file and "not valid YAML" in err.message and "line" in err.message


def test_unreadable_file(tmp_path):
    (err,) = errors_of(tmp_path / "missing.yaml")
    assert "cannot read" in err.message


def test_unknown_keys_warn_naming_file_and_key(tmp_path, caplog):
    text = GOOD.replace("name: test", "name: test\nsurprise: 1").replace(
        "exec-script: echo hi", "exec-script: echo hi\n    colour: red"
    )
    with caplog.at_level(logging.WARNING):
        config.load(write(tmp_path, text))
    messages = [r.getMessage() for r in caplog.records]
    assert any("unknown top-level key 'surprise'" in m for m in messages)
    assert any("action 'save': unknown key 'colour'" in m for m in messages)


def test_rego_syntax_error_is_reported_with_route(tmp_path):
    path = write(
        tmp_path, GOOD.replace('input: input.SigMetadata.ID == "TRC-2"', 'input: input.x == == "y"')
    )
    cfg = config.load(path)
    errs = config.rule_errors(cfg)
    assert errs
    assert all(e.where == "route 'trc2'" and e.key == "input" and e.file == str(path) for e in errs)
    assert "line 1" in errs[0].message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30), ("45", 45), ("10s", 10), ("5m", 300), ("2h", 7200), ("1d", 86400)],
)
def test_durations(text, seconds):
    assert config.parse_duration_s(text) == seconds


def run_cli(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_validate_prints_every_error_and_exits_non_zero(tmp_path):
    text = GOOD.replace("actions: [save]", "actions: [ghost]\n    input-files: [gone.rego]")
    path = write(tmp_path, text)
    result = run_cli("validate", str(path))
    assert result.returncode != 0
    assert f"{path}: route 'trc2': key 'actions': names action 'ghost'" in result.stderr
    assert f"{path}: route 'trc2': key 'input-files': Rego file not found" in result.stderr


def test_validate_reports_rego_errors(tmp_path):
    path = write(
        tmp_path, GOOD.replace('input: input.SigMetadata.ID == "TRC-2"', "input: input.a ==== 1")
    )
    result = run_cli("validate", str(path))
    assert result.returncode != 0 and "route 'trc2'" in result.stderr


def test_validate_accepts_the_examples():
    for cfg in sorted((REPO / "examples").glob("**/*.yaml")):
        result = run_cli("validate", str(cfg))
        assert result.returncode == 0, result.stderr


def test_run_with_broken_config_fails_before_connecting(tmp_path):
    path = write(tmp_path, GOOD.replace("actions: [save]", "actions: [ghost]"))
    import os

    env = {**os.environ, "POSTEE_KAFKA": "127.0.0.1:1", "POSTEE_CFG": str(path)}
    result = run_cli("run", env=env)
    assert result.returncode != 0
    assert f"{path}: route 'trc2': key 'actions'" in result.stderr


HTTP = """
routes:
  - name: ship
    actions: [post]
actions:
  - name: post
    type: HTTP
    enable: true
    url: https://logs.example/in
    method: post
    headers: {X-A: [one, two], X-B: single}
    timeout: 10s
    body-content: "id=event.input.id"
"""


def test_http_action_keys(tmp_path):
    cfg = config.load(write(tmp_path, HTTP))
    action = cfg.actions["post"]
    assert action.type == "http" and action.params["headers"]["X-A"] == ["one", "two"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("url: https://logs.example/in", "url: ftp://logs.example/in"), "url"),
        (("method: post", "method: teleport"), "method"),
        (("timeout: 10s", "timeout: soon"), "timeout"),
        (('body-content: "id=event.input.id"', "body-content: x\n    body-file: /tmp/f"), None),
        (("    url: https://logs.example/in\n", ""), None),
    ],
)
def test_http_action_errors(tmp_path, change, key):
    (err,) = errors_of(write(tmp_path, HTTP.replace(*change)))
    assert err.where == "action 'post'" and err.key == key
    assert "is not valid under" not in err.message and "should not be valid" not in err.message
