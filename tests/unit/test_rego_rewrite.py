"""Compile-time rewrites of Rego forms that rego-cpp lacks: same meaning, same lines."""

from __future__ import annotations

import pytest

from streams import rego_compat
from streams.rules import RouteMatcher, RouteRule


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            "allow {\ncontains(input.image, names[_])\n}",
            "allow {\n__pb1 := names[_]; contains(input.image, __pb1)\n}",
        ),
        (
            'allow if startswith(input.a[_].id, "x")',
            'allow if { __pb1 := input.a[_]; startswith(__pb1.id, "x") }',
        ),
        ("allow {\nnot contains(input.image, names[_])\n}", None),  # `not`: left alone
        ("x := [y | y := input.a[_]]", None),
        (
            'm := sprintf("%s: %d%%", [upper(s), n])',
            'm := concat("", [sprintf("%s", [upper(s)]), ": ", sprintf("%d", [n]), "%"])',
        ),
        ('m := sprintf("%s", [a])', None),  # one argument: rego-cpp is right
        (
            "r := array.concat(a, sort(rows))",
            "r := array.concat(a, [__ps1 | __ps1 := sort(rows)[_]])",
        ),
        ("r := [k | some k, v in input.e; v != null]", "r := [k | v := input.e[k]; v != null]"),
    ],
)
def test_rewrite(before: str, after: str | None) -> None:
    assert rego_compat.rewrite(before) == (before if after is None else after)


def test_multi_line_sprintf_keeps_line_numbers() -> None:
    text = 'r := sprintf("<tr>%s %d</tr>", [\n  f(a, b),\n  n,\n])\nq := 1'
    rewritten = rego_compat.rewrite(text)
    assert rewritten.count("\n") == text.count("\n")
    assert rewritten.endswith("q := 1")


def test_jsonformat_is_postees_pretty_json() -> None:
    expected = '"{\\n \\"a\\": [\\n  1\\n ],\\n \\"b\\": \\"\\\\u003c\\\\u0026\\\\u003e\\"\\n}"'
    rule = 'jsonformat({"b": "<&>", "a": [1]}) == ' + expected
    matcher = RouteMatcher.compile([RouteRule("r", rule)])
    assert matcher.evaluate({}) == {"r"}
