"""A worker consumes the command topics of its config's action types only: each topic it
consumes costs latency on all the others (streams/executor.py). Synchronous: an app built
inside a running loop leaves Faust's own loop unclosed."""

from __future__ import annotations

import textwrap
from pathlib import Path

from streams import executor
from streams.app import create_app
from streams.loading import compile_config
from streams.settings import Settings

CONFIG = """
routes:
  - {name: all, input: "true", actions: [mark]}
actions:
  - {name: mark, type: exec, enable: true, exec-script: "true"}
  - {name: ship, type: http, enable: false, url: "http://127.0.0.1:9/"}
"""


def test_a_worker_subscribes_the_types_of_its_actions_enabled_or_not(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    env = {
        "POSTEE_CFG": str(path),
        "POSTEE_TOPIC_PREFIX": "unit",
        "POSTEE_DATA_DIR": str(tmp_path / "data"),
    }
    settings = Settings.from_env(env)
    loaded = compile_config(settings)
    assert loaded.config.action_types() == ["exec", "http"]  # registry order, disabled too

    app = create_app(settings, loaded.config, loaded.matcher, loaded.renderer)
    executor.install(app, executor.ActionPool(settings))
    assert app.action_types == {"exec", "http"}
    consumed = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    assert consumed == {"unit.actions.exec", "unit.actions.http", "unit.retry"}
