"""The web UI in a real headless browser (Debian's Chromium driven by Playwright).

A worker and a `postee ui` share one topic prefix. The browser signs in through the login
form, then watches events arrive without a reload, opens a timeline, redrives a DLQ record,
runs a dry-run replay, and shows hostile event content as text. A screenshot of each page
is kept under tests/artifacts/ui/ (git-ignored; the path is printed).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams import records
from tests.conftest import REPO, missing_service
from tests.http_sink import Sink, http_sink
from tests.kafka_support import DEADLINE_S, Worker, start_ui, start_worker, unique_prefix, value

pytestmark = pytest.mark.kafka

TOKEN = "browser-t0ken"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui"
WAIT_MS = DEADLINE_S * 1000


@pytest.fixture(scope="module")
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


@pytest.fixture(scope="module")
def stack(bootstrap, module_tmp, log_dir, sink) -> Iterator[tuple[Worker, Worker]]:
    config = module_tmp / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: notes
            input: input.kind == "note"
            actions: [append]
          - name: ship
            input: input.kind == "ship"
            actions: [upload]
        actions:
          - name: append
            type: exec
            enable: true
            env: [OUT={module_tmp / "appended.log"}]
            exec-script: printf '%s\\n' "$POSTEE_EVENT_ID" >> "$OUT"
          - name: upload
            type: http
            enable: true
            url: {sink.base_url}/upload
            retries: 1
            retry-backoff: 0.05
        """)
    )
    prefix = unique_prefix("ui")
    worker = start_worker(bootstrap, config, log_dir, "ui", prefix=prefix)
    try:
        ui = start_ui(bootstrap, config, log_dir, prefix, {"POSTEE_UI_TOKEN": TOKEN})
    except BaseException:
        worker.stop()
        raise
    yield worker, ui
    ui.stop()
    worker.stop()


@pytest.fixture(scope="module")
async def browser(stack) -> AsyncIterator[Any]:
    """A signed-in browser context (fresh profile), through the login form."""
    if not CHROMIUM.is_file():
        missing_service(f"{CHROMIUM} is missing: scripts/install installs Debian's chromium")
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nUI screenshots: {ARTIFACTS}")
    profile = tempfile.mkdtemp(prefix="postee-ui-chromium-")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1300, "height": 900},
        )
        try:
            page = await context.new_page()
            await page.goto(stack[1].base_url + "/")
            await expect(page.locator("form.login")).to_be_visible()
            await page.fill("input[name=token]", TOKEN)
            await page.click("form.login button[type=submit]")
            await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
            await page.close()
            yield context
        finally:
            await context.close()
            shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def page(browser) -> AsyncIterator[Any]:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    await page.close()
    assert errors == [], f"script errors on the page: {errors}"


async def post(worker: Worker, event: dict[str, Any]) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(worker.base_url + "/", json=event)
    assert response.status_code == 202
    return str(response.json()["id"])


async def shoot(page: Any, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_events_appear_live_and_the_timeline_shows_the_outcome(stack, page):
    from playwright.async_api import expect

    worker, ui = stack
    await page.goto(ui.base_url + "/")
    await expect(page.locator("#live")).to_have_text("live", timeout=WAIT_MS)
    await page.evaluate("window.__sameDocument = true")
    batch = uuid.uuid4().hex[:8]
    ids = [await post(worker, {"kind": "note", "title": f"note {n} of {batch}"}) for n in range(3)]
    for event_id in ids:
        row = page.locator(f'tr[data-event="{event_id}"]')
        await expect(row.locator("td.commands")).to_contain_text(
            "append: succeeded", timeout=WAIT_MS
        )
    await expect(page.locator(f'tr[data-event="{ids[0]}"] td.title')).to_have_text(
        f"note 0 of {batch}"
    )
    assert await page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    await expect(page.locator("#chart-routes")).to_contain_text("notes", timeout=WAIT_MS)
    await expect(page.locator("#chart-statuses")).to_contain_text("succeeded")
    await shoot(page, "events")

    await page.select_option("select[name=route]", "ship")  # a filter: these rows go
    await expect(page.locator(f'tr[data-event="{ids[0]}"]')).to_have_count(0, timeout=WAIT_MS)
    await page.select_option("select[name=route]", "notes")
    await page.select_option("select[name=status]", "succeeded")
    await expect(page.locator(f'tr[data-event="{ids[0]}"]')).to_have_count(1, timeout=WAIT_MS)

    await page.click(f'tr[data-event="{ids[0]}"] td.title a')
    await expect(page.locator("h1")).to_contain_text(ids[0])
    timeline = page.locator("table.timeline")
    await expect(timeline).to_contain_text("append attempt 1: succeeded exit_code=0")
    await expect(timeline).to_contain_text("routes: notes (config ")
    await expect(page.locator(".facts")).to_contain_text("Config version")
    await expect(page.locator(".json-tree")).to_contain_text(f"note 0 of {batch}")
    await shoot(page, "timeline")


async def test_redrive_a_dlq_record_and_see_it_processed(stack, page, sink, reader_factory):
    from playwright.async_api import expect

    worker, ui = stack
    sink.script["/upload"] = [503, 503]  # both attempts fail: the command goes to the DLQ
    event_id = await post(worker, {"kind": "ship", "title": "forensic upload"})
    dlq = await reader_factory(worker.topic("dlq"))
    await dlq.wait_for(lambda m: value(m).get("event_id") == event_id)
    await _until_the_ui_has_the_dlq_record(ui, event_id)

    await page.goto(ui.base_url + "/dlq")
    row = page.locator(f'tr[data-event="{event_id}"]')
    await expect(row).to_contain_text("attempts exhausted")
    await expect(row.locator(".event-state")).to_contain_text("upload: failed", timeout=WAIT_MS)
    await row.locator("button.redrive").click()  # the sink answers 200 from now on
    await expect(row.locator(".redrives")).to_contain_text(".actions.http[", timeout=WAIT_MS)
    await expect(row.locator(".event-state")).to_contain_text(
        "upload: succeeded (attempt 3)", timeout=WAIT_MS
    )
    await shoot(page, "dlq")

    await page.click(f'tr[data-event="{event_id}"] a[href^="/events/"]')
    timeline = page.locator("table.timeline")
    await expect(timeline).to_contain_text("upload attempt 2: failed status_code=503")
    await expect(timeline).to_contain_text("redriven to ")
    await expect(timeline).to_contain_text("upload attempt 3: succeeded status_code=200")
    await shoot(page, "dlq-redriven-timeline")

    outcomes = await reader_factory(worker.topic("outcomes"))
    [redriven] = await outcomes.wait_for(
        lambda m: value(m)["kind"] == "redriven" and value(m)["event_id"] == event_id
    )
    assert records.schema_errors("redriven", value(redriven)) == []
    assert value(redriven)["from_source"] is True and redriven.key.decode() == event_id
    requests = sink.on("/upload")
    assert len(requests) == 3 and len({r.headers["Idempotency-Key"] for r in requests}) == 1


async def _until_the_ui_has_the_dlq_record(ui: Worker, event_id: str) -> None:
    end = time.monotonic() + DEADLINE_S
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        while time.monotonic() < end:
            entries = (await client.get(ui.base_url + "/api/dlq")).json()["entries"]
            if any(e["event_id"] == event_id for e in entries):
                return
            await asyncio.sleep(0.1)  # poll interval, bounded by the deadline above
    raise AssertionError(f"the UI never listed the DLQ record of {event_id}")


async def test_a_dry_run_replay_shows_its_result(stack, page, module_tmp, reader_factory):
    from playwright.async_api import expect

    worker, ui = stack
    outcomes = await reader_factory(worker.topic("outcomes"))
    start = datetime.now(UTC)
    ids = [await post(worker, {"kind": "note", "title": f"to replay {n}"}) for n in range(2)]
    await outcomes.wait_for(
        lambda m: value(m).get("event_id") in ids and value(m)["kind"] == "outcome", count=2
    )
    end = datetime.now(UTC)
    appended = (module_tmp / "appended.log").read_text()

    await page.goto(ui.base_url + "/replay")
    await page.fill("input[name=from]", start.isoformat())
    await page.fill("input[name=to]", end.isoformat())
    await page.select_option("select[name=route]", "notes")
    assert await page.is_checked("input[value=dry-run]")  # the default
    await page.click("#replay-form button[type=submit]")
    await expect(page.locator("#replay-state")).to_have_text("done", timeout=WAIT_MS)
    facts = page.locator("#replay-facts")
    await expect(facts.locator('dd[data-fact="Replayed"]')).to_have_text("2")
    await expect(facts.locator('dd[data-fact="Routes matched"]')).to_have_text("notes: 2")
    await expect(facts.locator('dd[data-fact="Outcomes"]')).to_have_text(
        "dry run: 2", timeout=WAIT_MS
    )
    await expect(facts.locator('dd[data-fact="Mode"]')).to_have_text("dry run")
    await shoot(page, "replay")
    assert (module_tmp / "appended.log").read_text() == appended  # no side effect


HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


async def test_hostile_event_content_is_shown_as_text(stack, page):
    from playwright.async_api import expect

    worker, ui = stack
    event_id = await post(worker, {"kind": "note", "title": HOSTILE, "deep": {"html": HOSTILE}})
    response = await page.goto(ui.base_url + "/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    row = page.locator(f'tr[data-event="{event_id}"]')
    await expect(row.locator("td.title")).to_have_text(HOSTILE, timeout=WAIT_MS)
    await expect(row.locator("td.commands")).to_contain_text("append: succeeded", timeout=WAIT_MS)
    assert await page.locator("main img, main script").count() == 0
    assert await page.evaluate("window.__pwned") is None
    await shoot(page, "hostile-list")

    await page.goto(f"{ui.base_url}/events/{event_id}")
    await expect(page.locator(".json-tree")).to_contain_text('"<img src=x onerror=')
    await page.click("button.toggle")  # the raw event as pretty text
    await expect(page.locator("pre#raw-event")).to_contain_text(json.dumps(HOSTILE)[1:-1])
    assert await page.locator("main img, main script").count() == 0
    assert await page.evaluate("window.__pwned") is None
    await shoot(page, "hostile-timeline")
