"""The process-side engine, in this process: bounds, input pruning, escapes, templates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.evaluator import EngineSpec, Evaluator, input_paths, input_refusal, project
from streams.rules import RouteMatcher, RouteRule
from streams.templates import TemplateRenderer
from tests.unit.engine_support import spec_of

#: Route rules of the kinds users write: regex, sprintf, contains, iteration, nested paths.
FUZZ_ROUTES = [
    RouteRule("regex", 'regex.match("^[a-z0-9-]+$", input.name)'),
    RouteRule("sprintf", 'sprintf("%s/%v", [input.name, input.n]) == "a/1"'),
    RouteRule("contains", 'contains(input.Context.containerImage, "nginx")'),
    RouteRule("iterate", 'some tag in input.tags\nstartswith(tag, "pci")'),
    RouteRule("nested", 'input["odd key"].x >= 2'),
    RouteRule("count", "count(input.tags) > 2"),
]


def spec(routes: list[RouteRule]) -> EngineSpec:
    return EngineSpec(RouteMatcher.compile(routes).spec, TemplateRenderer({}).sources, {})


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        ("input.a.b == 1\ninput.c", [("c",), ("a", "b")]),
        ('input["x-y"].z', [("x-y", "z")]),
        ("input . a", [("a",)]),
        ("some x in input.list\nx.id == data.other.input", [("list",)]),
        ('x := "input is bare here"  # and input here', []),
        ("count(input) > 1", None),
        ("input[k] == 1", None),
        ("data.p.allow with input as {}", None),
        ('x := $"{input.a}"', None),
    ],
)
def test_input_paths(text: str, paths: list[tuple[str, ...]] | None) -> None:
    assert input_paths([text]) == paths


def test_project_keeps_whole_subtrees() -> None:
    doc = {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": {"f": {"g": 1}}, "x": "drop"}
    paths = [("a",), ("a", "b"), ("d", "q"), ("e", "f", "g"), ("missing", "y")]
    assert project(doc, paths) == {"a": {"b": 1, "c": 2}, "d": [1, 2], "e": {"f": {"g": 1}}}


def test_input_refusal_counts_values_and_string_bytes() -> None:
    assert input_refusal({"a": list(range(10))}, 12, 100) is None
    assert "more than 11 JSON values" in str(input_refusal({"a": list(range(10))}, 11, 100))
    assert input_refusal({"a": "é" * 50}, 100, 100) is None
    assert "longer than 100 bytes" in str(input_refusal({"a": "é" * 51}, 100, 100))
    assert "longer than 100 bytes" in str(input_refusal({"k" * 101: 1}, 100, 100))


def test_a_route_reading_all_of_input_gets_it_all() -> None:
    evaluator = Evaluator(spec([RouteRule("all", "count(input) == 3")]))
    assert not evaluator.projects
    assert evaluator.evaluate(b'{"a": 1, "b": 2, "c": 3}').matched == {"all"}


def test_escaped_text_is_decoded_before_the_engine() -> None:
    # rego-cpp keeps `\u00e9` as six characters; the evaluator hands it decoded.
    evaluator = Evaluator(spec([RouteRule("e", 'input.name == "café"\ncount(input.name) == 4')]))
    assert evaluator.evaluate(b'{"name": "caf\\u00e9"}').matched == {"e"}
    assert evaluator.evaluate('{"name": "café"}'.encode()).matched == {"e"}


def test_templates_of_matched_routes_render_with_the_whole_event(tmp_path: Path) -> None:
    cfg = """
routes:
  - {name: r, input: 'input.kind == "x"', template: t, actions: [a]}
  - {name: s, input: 'input.kind == "nope"', template: broken, actions: [a]}
templates:
  - {name: t, body: "package t\\ntitle := input.kind\\nresult := input.other"}
  - {name: broken, body: "package b\\ntitle := 1\\nresult := input.missing"}
actions: [{name: a, type: exec, enable: true, exec-script: "true"}]
"""
    evaluator = Evaluator(spec_of(cfg, tmp_path))
    assert evaluator.projects  # the route reads input.kind only; the template all
    result = evaluator.evaluate(b'{"kind": "x", "other": "body"}')
    assert result.matched == {"r"} and result.template_errors == {}
    assert result.rendered == {"t": {"title": "x", "description": "body", "url": None}}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["a", "host-1", "A", ""]) | st.text(max_size=40),
        "n": st.integers(0, 3) | st.text(max_size=3),
        "tags": st.lists(st.sampled_from(["pci", "pci-dss", "x"]) | st.text(max_size=5)),
        "Context": st.fixed_dictionaries(
            {}, optional={"containerImage": st.sampled_from(["nginx:1", "redis"]) | json_values}
        ),
        "odd key": st.dictionaries(st.sampled_from(["x", "y"]), json_values) | json_values,
        "extra": json_values,
    },
)
PRUNED = Evaluator(spec(FUZZ_ROUTES))
WHOLE = Evaluator(spec([*FUZZ_ROUTES, RouteRule("bare", "input != null\nfalse")]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_pruned_input_gives_the_same_matches_as_the_whole_event(event: dict[str, object]) -> None:
    assert PRUNED.projects and not WHOLE.projects
    raw = json.dumps(event, ensure_ascii=False).encode()
    pruned, whole = PRUNED.evaluate(raw), WHOLE.evaluate(raw)
    assert pruned.error == whole.error
    assert pruned.matched == whole.matched


def test_a_decision_is_remembered_per_input_the_routes_read() -> None:
    evaluator = Evaluator(spec(FUZZ_ROUTES))
    first = evaluator.evaluate(b'{"name": "host-1", "pid": 1}')
    again = evaluator.evaluate(b'{"name": "host-1", "pid": 2}')  # pid: read by no route
    assert first.matched == again.matched == {"regex"}
    assert evaluator.decisions.hits == 1 and len(evaluator.decisions) == 1
    assert evaluator.evaluate(b'{"name": "Host-1"}').matched == frozenset()
    assert evaluator.evaluate(b'{"name": "host-1"}', only="contains").matched == frozenset()
    assert evaluator.decisions.hits == 1 and len(evaluator.decisions) == 3


def test_the_decision_cache_is_bounded_and_drops_the_oldest() -> None:
    evaluator = Evaluator(spec(FUZZ_ROUTES), decision_cache=2)
    for name in ("a", "b", "c", "a"):
        evaluator.evaluate(json.dumps({"name": name}).encode())
    assert len(evaluator.decisions) == 2 and evaluator.decisions.hits == 0


@pytest.mark.parametrize(
    "rule",
    [
        "time.now_ns() > 0",
        'rand.intn("x", 10) >= 0',
        'uuid.rfc4122("k") != ""',
    ],
)
def test_rules_calling_unstable_builtins_are_never_remembered(rule: str) -> None:
    evaluator = Evaluator(spec([RouteRule("r", f'{rule}\ninput.name == "a"')]))
    for _ in range(3):
        assert evaluator.evaluate(b'{"name": "a"}').matched == {"r"}
    assert len(evaluator.decisions) == 0 and evaluator.decisions.hits == 0


CACHED = Evaluator(spec(FUZZ_ROUTES))
UNCACHED = Evaluator(spec(FUZZ_ROUTES), decision_cache=0)
#: A few values per field, so that examples repeat the routes' input and hit the cache.
repeating = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["a", "host-1", "A", "é"]),
        "n": st.sampled_from([1, "1", 2]),
        "tags": st.sampled_from([["pci"], ["x", "pci-dss", "y"], []]),
        "pid": st.integers(),  # read by no route: varies freely
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(repeating)
def test_remembered_decisions_equal_the_engines(event: dict[str, object]) -> None:
    raw = json.dumps(event, ensure_ascii=False).encode()
    assert CACHED.evaluate(raw) == UNCACHED.evaluate(raw)
