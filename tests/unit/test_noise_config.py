"""cfg.yaml keys of noise control: rate limits, rate-limit summaries, chain conditions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streams import config
from tests.unit.test_config import errors_of

ACTIONS = """
actions:
  - {name: label, type: exec, enable: true, exec-script: "true"}
  - {name: scale, type: exec, enable: true, exec-script: "true"}
  - {name: page, type: exec, enable: true, exec-script: "true"}
"""


def write(tmp_path: Path, routes: str, actions: str = ACTIONS) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(routes) + textwrap.dedent(actions))
    return path


def test_chain_steps_take_on_conditions_and_plain_names(tmp_path):
    path = write(
        tmp_path,
        """
        routes:
          - name: contain
            serialize-actions: true
            actions: [label, {name: scale, on: success}, {name: page, "on": failure}]
        """,
    )
    (route,) = config.load(path, tmp_path).routes
    assert route.actions == ("label", "scale", "page")
    assert dict(route.conditions) == {"scale": "success", "page": "failure"}


def test_always_is_the_default_and_is_not_stored(tmp_path):
    path = write(
        tmp_path,
        """
        routes:
          - name: r
            serialize-actions: true
            actions: [label, {name: scale, on: always}, {name: page}]
        """,
    )
    (route,) = config.load(path, tmp_path).routes
    assert route.actions == ("label", "scale", "page") and dict(route.conditions) == {}


@pytest.mark.parametrize(
    ("routes", "key", "words"),
    [
        (
            "actions: [label, {name: scale, on: success}]",
            "actions.1.on",
            "needs serialize-actions: true",
        ),
        (
            "serialize-actions: true\n    actions: [{name: label, on: failure}, scale]",
            "actions.0.on",
            "is the first step",
        ),
        (
            "serialize-actions: true\n    actions: [label, {name: scale, on: sometimes}]",
            "actions.1",
            "not valid",
        ),
        (
            "serialize-actions: true\n    actions: [label, {name: scale, when: success}]",
            "actions.1",
            "not valid",
        ),
    ],
)
def test_bad_conditions_name_file_route_and_key(tmp_path, routes, key, words):
    path = write(tmp_path, f"routes:\n  - name: r\n    {routes}\n")
    (error,) = errors_of(path)
    assert error.file == str(path) and error.where == "route 'r'" and error.key == key
    assert words in error.message


def test_an_undefined_action_in_a_step_entry_is_named(tmp_path):
    path = write(
        tmp_path,
        "routes:\n  - name: r\n    serialize-actions: true\n"
        "    actions: [label, {name: ghost, on: success}]\n",
    )
    (error,) = errors_of(path)
    assert error.key == "actions" and "'ghost'" in error.message


@pytest.mark.parametrize(
    ("text", "count", "per_s"),
    [("3/h", 3, 3600), ("10/s", 10, 1), ("5 / 15m", 5, 900), ("1/d", 1, 86400), ("7/2m", 7, 120)],
)
def test_rate_limits_on_routes_and_actions(tmp_path, text, count, per_s):
    path = write(
        tmp_path,
        f"routes:\n  - name: r\n    actions: [label]\n    rate-limit: {text}\n"
        "    rate-limit-summary: true\n",
        ACTIONS.replace(
            'name: page, type: exec, enable: true, exec-script: "true"',
            'name: page, type: exec, enable: true, exec-script: "true", '
            "rate-limit: {rate: 2/m, burst: 6}",
        ),
    )
    cfg = config.load(path, tmp_path)
    limit = cfg.routes[0].rate_limit
    assert limit is not None and (limit.count, limit.per_s, limit.burst) == (count, per_s, count)
    assert limit.summary is True
    page = cfg.actions["page"]
    assert page.rate_limit == config.RateLimit(2, 60, 6, False, "2/m")
    assert "rate-limit" not in page.params  # a common key, not one of the action's own


@pytest.mark.parametrize(
    ("limit", "key", "words"),
    [
        ("3/week", "rate-limit", "not valid"),
        ("0/h", "rate-limit", "at least 1"),
        ("{rate: 5/m, burst: 2}", "rate-limit.burst", "below the rate's count 5"),
        ("{burst: 2}", "rate-limit", "not valid"),
    ],
)
def test_bad_rate_limits_name_file_place_and_key(tmp_path, limit, key, words):
    path = write(tmp_path, f"routes:\n  - name: r\n    actions: [label]\n    rate-limit: {limit}\n")
    (error,) = errors_of(path)
    assert (error.file, error.where, error.key) == (str(path), "route 'r'", key)
    assert words in error.message


def test_a_summary_without_a_rate_limit_is_an_error_on_an_action(tmp_path):
    actions = ACTIONS.replace(
        'name: page, type: exec, enable: true, exec-script: "true"',
        'name: page, type: exec, enable: true, exec-script: "true", rate-limit-summary: true',
    )
    path = write(tmp_path, "routes:\n  - name: r\n    actions: [page]\n", actions)
    (error,) = errors_of(path)
    assert (error.where, error.key) == ("action 'page'", "rate-limit-summary")
    assert "needs a rate-limit" in error.message
