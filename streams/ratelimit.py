"""Rate limits per route and per action (the pure parts)."""

from __future__ import annotations

__all__: list[str] = []
