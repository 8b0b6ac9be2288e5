"""Thin helpers over regopy shared by route rules and templates.

regopy reports failures four ways (an exception from `add_module`, a bundle or an output
with `ok() == False`, and an error s-expression where JSON was expected); these helpers
turn all of them into `EngineFailure(text)`, and silence the engine's own printing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import regopy

__all__ = ["EngineFailure", "build", "new_interpreter", "node_text", "query", "set_input"]


class EngineFailure(Exception):
    """Raw regopy error text (an s-expression), for the caller to explain."""


def new_interpreter() -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    # regopy prints compile errors to the process's stdout at its default level.
    interpreter.log_level = regopy.LogLevel.NONE
    return interpreter


def set_input(interpreter: regopy.Interpreter, document: object) -> None:
    """Give the engine its `input` as JSON text. regopy's `set_input(dict)` hands strings
    over unescaped, so quotes, backslashes and control characters in an event would break
    comparisons and outputs; JSON text (non-ASCII kept as is, so lengths count characters)
    is parsed by the engine itself."""
    interpreter.set_input_term(json.dumps(document, ensure_ascii=False, separators=(",", ":")))


def build(modules: Sequence[tuple[str, str]], entrypoints: Sequence[str]) -> regopy.Bundle:
    """Compile (name, text) modules into a bundle with these entrypoints."""
    builder = new_interpreter()
    try:
        for name, text in modules:
            builder.add_module(name, text)
        bundle = builder.build(None, list(entrypoints))
    except regopy.RegoError as exc:
        raise EngineFailure(str(exc)) from None
    if not bundle.ok():  # Some compile errors come back this way, not as exceptions.
        raise EngineFailure(node_text(bundle.node()))
    return bundle


def query(interpreter: regopy.Interpreter, bundle: regopy.Bundle, entrypoint: str) -> object:
    """Value of one entrypoint for the interpreter's current input; None when undefined."""
    try:
        out = interpreter.query_bundle_entrypoint(bundle, entrypoint)
    except json.JSONDecodeError as exc:
        # Some engine errors come back with ok() True and an error s-expression in
        # place of JSON, which regopy's Output then fails to parse.
        raise EngineFailure(exc.doc) from None
    except regopy.RegoError as exc:
        raise EngineFailure(str(exc)) from None
    if not out.ok():
        raise EngineFailure(node_text(out.node()))
    if len(out) == 0 or not out[0].expressions:
        return None
    value: object = out[0].expressions[0]
    return value


def node_text(node: regopy.Node) -> str:
    return "\n".join(str(node.at(i).json()) for i in range(len(node)))
