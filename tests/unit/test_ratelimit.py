"""Rate-limit windows: what passes, what is suppressed, what a new window gets."""

from __future__ import annotations

from streams import ratelimit
from streams.config import RateLimit
from streams.plugins import PluginRequest

HOUR_MS = 3_600_000


def request(event_id: str, count: int = 3, burst: int | None = None) -> PluginRequest:
    limit = RateLimit(count, 3600, burst or count, summary=True, text=f"{count}/h")
    return PluginRequest(
        kind="rate", key="rate|route|r", route="r", at_ms=0, event_id=event_id,
        number=limit.count, timeout_s=limit.per_s, burst=limit.burst, summary=True,
        limit=limit.text,
    )  # fmt: skip


def run(entry, times: int, at_ms: int, **limits):
    passed = []
    for n in range(times):
        entry, ok, ended = ratelimit.admit(entry, request(f"e{at_ms}-{n}", **limits), at_ms)
        passed.append(ok)
    return entry, passed, ended


def test_three_per_hour_lets_three_through_and_counts_the_rest():
    entry, passed, ended = run(None, 10, 1000)
    assert passed == [True] * 3 + [False] * 7 and ended is None
    assert entry["suppressed"] == 7 and len(entry["sample"]) == 7
    assert ratelimit.due(entry, 1000 + HOUR_MS) and not ratelimit.due(entry, HOUR_MS)


def test_the_next_window_ends_the_last_one_and_hands_its_summary():
    entry, _, _ = run(None, 5, 0)
    entry, ok, ended = ratelimit.admit(entry, request("late"), HOUR_MS + 5)
    assert ok and ended is not None and ended["suppressed"] == 2
    assert entry["start_ms"] == HOUR_MS + 5 and entry["suppressed"] == 0


def test_burst_keeps_what_quiet_windows_left_up_to_its_size():
    entry, passed, _ = run(None, 1, 0, count=2, burst=5)
    assert passed == [True]  # the first window starts full: 5, one used
    # Three windows later: 4 left + 3 windows x 2, capped at the burst of 5.
    entry, passed, _ = run(entry, 7, 3 * HOUR_MS, count=2, burst=5)
    assert passed == [True] * 5 + [False] * 2


def test_a_summarised_window_owes_nothing_more():
    entry, _, _ = run(None, 4, 0)
    closed = {**entry, "closed": True, "suppressed": 0}
    assert not ratelimit.due(closed, 2 * HOUR_MS)
    _, ok, ended = ratelimit.admit(closed, request("next"), 2 * HOUR_MS)
    assert ok and ended is None
