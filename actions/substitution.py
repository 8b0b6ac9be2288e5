"""`event.input.<path>` tokens: Postee's way to put event values into action parameters.

A path is dot-separated keys; a backslash escapes a dot inside a key
(`metadata.labels.trivy-operator\\.resource\\.name`); a numeric step indexes a list, and
on a list a key step takes the first element (upstream's rule). Unlike upstream, a text
may hold several tokens, anywhere in a line. Strings go in as they are, other values as
compact JSON; a path that resolves to nothing becomes the empty string and is reported.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Substitution", "lookup", "split_path", "substitute"]

#: Key characters are letters, digits, `_` and `-`; a backslash takes the next character
#: as it is (`\.`, `\/`), so keys like `app.kubernetes.io/name` can be written.
TOKEN = re.compile(r"event\.input\.((?:[\w\-]|\\.)+(?:\.(?:[\w\-]|\\.)+)*)")
_MISSING = object()


@dataclass
class Substitution:
    text: str
    unresolved: list[str] = field(default_factory=list)  #: tokens whose path was absent


def split_path(path: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in path:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def lookup(event: Any, path: str) -> Any:
    """The value at a dot path, or None when absent."""
    value = event
    for step in split_path(path):
        if isinstance(value, list):
            if step.isdigit():
                value = value[int(step)] if int(step) < len(value) else _MISSING
            else:
                value = (
                    value[0].get(step, _MISSING)
                    if value and isinstance(value[0], dict)
                    else _MISSING
                )
        elif isinstance(value, Mapping):
            value = value.get(step, _MISSING)
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return value


def substitute(
    text: str, event: Mapping[str, Any], encode: Callable[[str], str] = lambda s: s
) -> Substitution:
    """Replace every token in `text`; `encode` escapes values for the context (e.g. a URL)."""
    result = Substitution(text)

    def replace(match: re.Match[str]) -> str:
        value = lookup(event, match.group(1))
        if value is None:
            result.unresolved.append(match.group(0))
            return ""
        return encode(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))

    result.text = TOKEN.sub(replace, text)
    return result
