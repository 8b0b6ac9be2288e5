"""The shortcuts that spare the walks over an event (`records._shallow`, `input_refusal`'s
`text_bytes`) never pass what the walk would refuse: checked on generated documents with
bounds small enough that both answers occur."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import records
from streams.evaluator import input_refusal

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=40,
)


def texts(document: Any) -> list[bytes]:
    # As senders write it: escaped to ASCII (an escape is longer than its character),
    # raw UTF-8, and compact.
    return [
        json.dumps(document).encode(),
        json.dumps(document, ensure_ascii=False).encode(),
        json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode(),
    ]


@settings(max_examples=300, deadline=None)
@given(documents, st.integers(1, 60), st.integers(1, 60))
def test_text_length_settles_only_what_the_walk_would_pass(
    document: Any, max_values: int, max_string_bytes: int
) -> None:
    for text in texts(document):
        walked = input_refusal(document, max_values, max_string_bytes)
        shortcut = input_refusal(document, max_values, max_string_bytes, text_bytes=len(text))
        assert shortcut == walked


@settings(max_examples=300, deadline=None)
@given(documents)
def test_a_shallow_text_has_no_deep_document(document: Any) -> None:
    for text in texts(document):
        if records._shallow(text):
            assert records._shape_problem(document) is None


def test_the_depth_bound_still_refuses_deep_text() -> None:
    deep: Any = 1
    for _ in range(records.MAX_JSON_DEPTH + 1):
        deep = [deep]
    text = json.dumps(deep).encode()
    assert not records._shallow(text)
    assert records._shape_problem(deep) is not None
