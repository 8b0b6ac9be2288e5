"""The fast validator (jsonschema-rs) never lets through what `jsonschema` refuses.

`records.schema_errors` accepts a record early when jsonschema-rs passes it; these tests
mutate valid records at every path, in every way a sender could, and check that each
mutant jsonschema-rs passes, `jsonschema` passes too (and that valid records do take the
fast path, or it would be useless)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from streams import records
from tests.unit.test_records import sample_command
from tests.unit.test_silences import silence

#: What a forged record may hold in place of any value.
REPLACEMENTS: list[Any] = [
    None, True, 0, -1, 2**63, 1.5, "", "x", "a" * 32, "A" * 32, "a" * 32 + "\n",
    "2026-01-01T00:00:00Z", [], [1], {}, {"k": "v"},
]  # fmt: skip


def valid_records() -> Iterator[tuple[str, dict[str, Any]]]:
    chained = sample_command(then=(records.ChainStep("b" * 32, "next", "http"),))
    yield "command", sample_command().to_dict()
    yield "command", chained.to_dict()
    yield "command", sample_command(event_ref=None, event={"nested": [1, {"a": None}]}).to_dict()
    yield "silence", json.loads(silence().to_json())
    yield "silence", json.loads(silence(route=None, rule='input.a == "b"').to_json())


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index path inside `value`."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        yield (*prefix, key)
        if isinstance(child, dict | list):
            yield from paths(child, (*prefix, key))


def mutants(value: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield "an unknown key", {**value, "params": {"exec-script": "id"}}
    for path in paths(value):
        *parents, last = path
        for replacement in [*REPLACEMENTS, "<deleted>"]:
            changed = copy.deepcopy(value)
            holder = changed
            for step in parents:
                holder = holder[step]
            if replacement == "<deleted>":
                del holder[last]
            else:
                holder[last] = replacement
            yield f"{'/'.join(map(str, path))} = {replacement!r}", changed


def python_valid(name: str, value: Any) -> bool:
    return not list(records._validator(name).iter_errors(value))


@pytest.mark.parametrize(("name", "value"), list(valid_records()))
def test_valid_records_take_the_fast_path(name, value):
    assert python_valid(name, value)
    assert records._fast_validator(name).is_valid(value)
    assert records.schema_errors(name, value) == []


@pytest.mark.parametrize(("name", "value"), list(valid_records()))
def test_nothing_the_fast_validator_passes_is_refused_by_jsonschema(name, value):
    fast = records._fast_validator(name)
    checked = refused = 0
    for what, mutant in mutants(value):
        checked += 1
        if fast.is_valid(mutant):
            assert python_valid(name, mutant), f"{name}: {what} passes only the fast check"
        else:
            refused += 1
    assert checked > 50 and refused > 10  # the corpus does reach the schema's rules


def test_a_trailing_newline_in_an_id_is_judged_by_jsonschema():
    # Python's `$` matches before a final newline, jsonschema-rs's does not: the record is
    # refused by the fast check and then judged by jsonschema, as before the fast check.
    value = sample_command().to_dict() | {"command_id": "a" * 32 + "\n"}
    assert not records._fast_validator("command").is_valid(value)
    assert records.schema_errors("command", value) == []
