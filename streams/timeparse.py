"""Times given on the command line: ISO 8601, `now`, or an age like `15m` (= 15 minutes ago)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_time"]

_AGE = re.compile(r"(\d+)\s*([smhd])(?:\s*ago)?")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: datetime | None = None) -> datetime:
    now = now or datetime.now(UTC)
    text = text.strip()
    if text == "now":
        return now
    age = _AGE.fullmatch(text)
    if age:
        return now - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601, 'now', or an age like 15m)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
