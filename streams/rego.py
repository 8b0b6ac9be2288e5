"""Thin helpers over regopy shared by route rules and templates.

regopy reports failures four ways (an exception from `add_module`, a bundle or an output
with `ok() == False`, and an error s-expression where JSON was expected); these helpers
turn all of them into `EngineFailure(text)`, and silence the engine's own printing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import regopy

from streams.rego_compat import rewrite

__all__ = [
    "Encoded",
    "EngineFailure",
    "OneThread",
    "build",
    "encode",
    "new_interpreter",
    "node_text",
    "query",
    "set_input",
]


class EngineFailure(Exception):
    """Raw regopy error text (an s-expression), for the caller to explain."""


def new_interpreter() -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    # regopy prints compile errors to the process's stdout at its default level.
    interpreter.log_level = regopy.LogLevel.NONE
    return interpreter


class OneThread:
    """regopy interpreters are not thread-safe: fail loudly on a second thread instead of
    corrupting the interpreter. The owner is the first thread that enters."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._owner: int | None = None

    def enter(self) -> None:
        caller = threading.get_ident()
        if self._owner is None:
            self._owner = caller
        elif self._owner != caller:
            raise RuntimeError(f"{self.what} used from a second thread; use one per thread")


@dataclass(frozen=True)
class Encoded:
    """A document already turned into the engine's input text, so that routes and
    templates evaluating one event encode it once."""

    text: str


def encode(document: object) -> Encoded:
    """JSON text, non-ASCII kept as is (so the engine's lengths count characters).
    regopy's `set_input(dict)` hands strings over unescaped, so quotes, backslashes and
    control characters in an event would break comparisons and outputs; JSON text is
    parsed by the engine itself."""
    return Encoded(json.dumps(document, ensure_ascii=False, separators=(",", ":")))


def set_input(interpreter: regopy.Interpreter, document: object) -> None:
    """Give the engine its `input` (a document, or one `encode`d already)."""
    encoded = document if isinstance(document, Encoded) else encode(document)
    interpreter.set_input_term(encoded.text)


def build(modules: Sequence[tuple[str, str]], entrypoints: Sequence[str]) -> regopy.Bundle:
    """Compile (name, text) modules, each `rewrite`n, into a bundle."""
    builder = new_interpreter()
    try:
        for name, text in modules:
            builder.add_module(name, rewrite(text))
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
