"""The evaluator pool with real processes: order, crashes, kills and timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from streams.eval_pool import EvalPool
from streams.evaluator import EngineSpec
from streams.rules import RouteMatcher, RouteRule
from streams.settings import EngineSettings
from streams.templates import TemplateRenderer
from tests.unit.engine_support import spec_of

#: A rule that keeps the engine busy for many seconds when `input.slow` is true.
SLOW = "input.slow == true\ncount([x | some x in numbers.range(1, 50000000)]) > 0"
ROUTES = [
    RouteRule("name", 'regex.match("^[a-z0-9-]+$", input.name)'),
    RouteRule("slow", SLOW),
    RouteRule("kind", 'input.kind == "x"'),
]
DEADLINE_S = 60.0


def event(**fields: object) -> bytes:
    return json.dumps(fields).encode()


async def until(condition: Callable[[], bool]) -> None:
    """Wait for a condition of the pool (checked between event-loop turns)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
def spec() -> EngineSpec:
    matcher = RouteMatcher.compile(ROUTES)
    return EngineSpec(matcher.spec, TemplateRenderer({}).sources, {})


@pytest.fixture
async def pool(spec: EngineSpec) -> AsyncIterator[EvalPool]:
    pool = EvalPool(spec, EngineSettings(eval_workers=2, eval_timeout_ms=1000))
    await pool.start()
    yield pool
    await pool.stop()


async def test_results_come_back_for_each_event_in_order(pool: EvalPool) -> None:
    raws = [event(name=f"host-{i}", kind="x" if i % 2 else "y") for i in range(40)]
    results = await asyncio.gather(*(pool.evaluate(raw) for raw in raws))
    for i, result in enumerate(results):
        assert result.error is None
        assert result.matched == ({"name", "kind"} if i % 2 else {"name"})


async def test_only_route(pool: EvalPool) -> None:
    result = await pool.evaluate(event(name="a", kind="x"), "kind")
    assert result.matched == {"kind"}


async def test_a_long_string_under_regex_does_not_crash(pool: EvalPool) -> None:
    # 50,000 characters overflow the default 8 MiB stack in rego-cpp's regex matcher;
    # the engine thread's stack is large enough for any body the bridge accepts.
    result = await pool.evaluate(event(name="a" * 50_000))
    assert result.error is None and result.matched == {"name"}
    assert pool.replaced == 0


async def test_a_timeout_kills_the_evaluator_and_the_stream_goes_on(pool: EvalPool) -> None:
    slow = asyncio.ensure_future(pool.evaluate(event(slow=True)))
    fast = await pool.evaluate(event(kind="x"))  # the other process still answers
    assert fast.matched == {"kind"}
    result = await slow
    assert result.error is not None
    assert "longer than 1000 ms (POSTEE_EVAL_TIMEOUT_MS)" in result.error
    assert "failed twice" in result.error  # retried once on a new evaluator
    assert pool.replaced == 2
    assert (await pool.evaluate(event(kind="x"))).matched == {"kind"}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSEGV])
async def test_a_process_killed_mid_event_is_replaced_and_the_event_retried(
    pool: EvalPool, sig: signal.Signals
) -> None:
    job = asyncio.ensure_future(pool.evaluate(event(kind="x", slow=True, name="A")))
    await until(lambda: bool(pool.busy_pids()))
    os.kill(pool.busy_pids()[0], sig)
    await until(lambda: pool.replaced == 1 and bool(pool.busy_pids()))
    os.kill(pool.busy_pids()[0], signal.SIGKILL)  # the retry dies too: the event fails
    result = await job
    assert result.error == (
        f"evaluator failed twice on this event: evaluator process killed by {sig.name}; "
        "then evaluator process killed by SIGKILL"
    )
    assert (await pool.evaluate(event(kind="x"))).matched == {"kind"}


async def test_one_kill_then_the_retry_succeeds(spec: EngineSpec) -> None:
    pool = EvalPool(spec, EngineSettings(eval_workers=1, eval_timeout_ms=60_000))
    await pool.start()
    try:
        queued = [asyncio.ensure_future(pool.evaluate(event(kind="x", n=i))) for i in range(5)]
        # One loop turn dispatches the jobs; their answers need more turns to be read, so
        # the process is still busy here (polling with sleeps could miss a fast answer).
        await asyncio.sleep(0)
        (busy,) = pool.busy_pids()
        os.kill(busy, signal.SIGKILL)
        results = await asyncio.gather(*queued)
        assert [r.matched for r in results] == [{"kind"}] * 5  # nothing lost, in order
        assert pool.replaced == 1
    finally:
        await pool.stop()


async def test_a_batch_renders_through_the_pool(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "t.rego").write_text(
        'package t\nimport rego.v1\ntitle := "one"\nresult := input.name\n'
        'aggregation_pkg := "t.batch"\n'
    )
    (templates / "b.rego").write_text(
        'package t.batch\nimport rego.v1\ntitle := "batch"\n'
        'result := concat(",", [m.title | some m in input])\n'
    )
    spec = spec_of(
        "routes: [{name: r, template: t, actions: [a]}]\n"
        "templates: [{name: t, rego-package: t}]\n"
        "actions: [{name: a, type: exec, enable: true, exec-script: 'true'}]\n",
        tmp_path,
        templates,
    )
    pool = EvalPool(spec, EngineSettings(eval_workers=1))
    await pool.start()
    try:
        rendered = await pool.evaluate(event(name="n"))
        assert rendered.rendered["t"]["description"] == "n"
        status, batch = await pool.render_batch("t", [{"title": "x"}, {"title": "y"}])
        assert (status, batch["description"]) == ("ok", "x,y")
    finally:
        await pool.stop()
