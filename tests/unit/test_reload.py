"""A runner's reload (no routes, no engine): SIGHUP's work, done in process. Synchronous:
an app built inside a running loop leaves Faust's own loop unclosed."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

from streams import runner
from streams.loading import compile_config
from streams.reload import Reloader
from streams.settings import Settings

ACTIONS = """
actions:
  - {name: mark, type: exec, enable: true, runs-on: node-a, exec-script: "echo %s"}
"""


def settings_for(tmp_path: Path, path: Path) -> Settings:
    env = {
        "POSTEE_CFG": str(path),
        "POSTEE_TOPIC_PREFIX": "unit",
        "POSTEE_DATA_DIR": str(tmp_path / "data"),
    }
    return Settings.from_env(env).with_overrides(runner_name="node-a")


def test_a_runner_reloads_its_actions_and_refuses_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "runner.yaml"
    path.write_text(textwrap.dedent(ACTIONS % "one"))
    settings = settings_for(tmp_path, path)
    app, _ = runner.build_app(settings, compile_config(settings, with_routes=False).config)
    reloader = Reloader(app)
    assert not reloader.routes  # a runner has no engine to replace
    first = app.config.version

    path.write_text(textwrap.dedent(ACTIONS % "two"))
    applied = asyncio.run(reloader.reload("test"))
    assert (applied.applied, applied.previous) == (True, first)
    assert app.config.version == applied.version != first
    assert app.config.actions["mark"].params["exec-script"] == "echo two"

    path.write_text("actions: [{name: mark, type: no-such-type, enable: true}]\n")
    refused = asyncio.run(reloader.reload("test"))
    assert (refused.applied, refused.version) == (False, applied.version)
    assert str(path) in str(refused.error) and "action 'mark'" in str(refused.error)
    assert app.config.actions["mark"].params["exec-script"] == "echo two"
    samples = {
        s.labels["result"]: s.value
        # This counter's own samples (collecting the registry would also read the lag of
        # a consumer this test never starts).
        for family in app.metrics.config_reloads.collect()
        for s in family.samples
        if s.name.endswith("_total")
    }
    assert samples == {"applied": 1.0, "refused": 1.0}
