"""A short title for an event that has no template: from the fields the usual sources fill."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["TITLE_CHARS", "event_title"]

TITLE_CHARS = 120
#: Where the usual sources keep a one-line summary: Falco, Tracee, Aqua, Trivy, ...
_TITLE_PATHS = (
    ("title",),
    ("summary",),
    ("output",),
    ("message",),
    ("SigMetadata", "Name"),
    ("rule",),
    ("name",),
    ("ArtifactName",),
    ("image",),
    ("metadata", "name"),
)


def event_title(event: Any) -> str:
    """A short line about an event, from the fields the usual sources fill."""
    if not isinstance(event, dict):
        return ""
    for path in _TITLE_PATHS:
        found: Any = event
        for step in path:
            found = found.get(step) if isinstance(found, dict) else None
        if isinstance(found, str) and found.strip():
            return found.strip()[:TITLE_CHARS]
    return json.dumps(event, ensure_ascii=False)[:TITLE_CHARS]
