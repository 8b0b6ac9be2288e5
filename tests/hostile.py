"""Hypothesis strategies for hostile event bodies: what a broken or malicious client sends."""

from __future__ import annotations

import json

from hypothesis import strategies as st


class Body(bytes):
    """Body bytes with a short repr: Hypothesis prints failing examples, and a megabyte
    of repr would drown the failure (and trips its own 'overly large repr' warning)."""

    def __repr__(self) -> str:
        head = bytes(self[:60])
        return f"Body({len(self)} bytes: {head!r}{'...' if len(self) > 60 else ''})"


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=200),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=40,
)


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


_hostile = st.one_of(
    st.binary(max_size=2000),  # random bytes, mostly invalid UTF-8 or not JSON
    st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    json_values.map(lambda v: json.dumps(v).encode()),  # valid JSON, often not an object
    st.dictionaries(st.text(max_size=20), json_values, max_size=8).map(
        lambda d: json.dumps(d).encode()
    ),
    st.integers(min_value=65, max_value=10_000).map(_deep),  # nesting past the limit
    st.sampled_from(
        [
            b'{"x": NaN}',
            b'{"x": Infinity}',
            b'{"x": -Infinity}',
            b'{"x": 1e999}',
            b'{"n": 123456789012345678901234567890}',
            b'{"a": 1, "a": 2}',
            b"\xff\xfe{\x00}",
            b'{"s": "\\ud800"}',
            b"",
            b"   ",
            b"null",
            b"[]",
        ]
    ),
    st.integers(min_value=1, max_value=50_000).map(
        lambda n: json.dumps({f"k{i}": i for i in range(n)}).encode()
    ),
    st.integers(min_value=1, max_value=1_200_000).map(
        lambda n: json.dumps({"s": "x" * n}).encode()
    ),
)

hostile_bodies = _hostile.map(Body)
