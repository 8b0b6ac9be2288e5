"""Whatever the bytes, decoding and rule evaluation answer with a reason, never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from streams import records
from streams.errors import EventError
from streams.rules import RouteMatcher, RouteRule, RuleEvaluationError
from tests.hostile import hostile_bodies

MATCHER = RouteMatcher.compile(
    [
        RouteRule("field", input="input.a == 1"),
        RouteRule("nested", input='some v in input.list\nv.id == "x"'),
        RouteRule("text", input='contains(input.s, "x")'),
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(hostile_bodies)
def test_any_body_decodes_or_gives_a_reason(body: bytes):
    try:
        event = records.parse_json_object(body)
    except EventError as exc:
        assert exc.stage == "decode" and exc.reason
        return
    assert isinstance(event, dict)
    try:
        matched = MATCHER.evaluate(event)
    except RuleEvaluationError as exc:
        assert exc.reason
        return
    assert matched <= {"field", "nested", "text"}
