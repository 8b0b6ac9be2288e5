"""`postee ui` over HTTP: 401 without credentials, bearer or login cookie, no open
listener off loopback, and the timeline of an event the index no longer holds."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streams import records
from tests.conftest import self_signed_cert
from tests.kafka_support import (
    DEADLINE_S,
    REPO,
    Worker,
    free_port,
    produce,
    start_ui,
    unique_prefix,
)

pytestmark = pytest.mark.kafka

TOKEN = "ui-t0ken-for-tests"
PAGES = ["/", "/dlq", "/replay", "/events/01a2374a0c517b3eb5b8f6c1d0a1e2f3"]
APIS = ["/api/events", "/api/counts", "/api/stream", "/api/dlq", "/api/replays", "/api/events/x"]


@pytest.fixture(scope="module")
def config(module_tmp: Path) -> Path:
    path = module_tmp / "cfg.yaml"
    path.write_text(
        textwrap.dedent("""
        routes:
          - {name: all, actions: [noop]}
        actions:
          - {name: noop, type: exec, enable: true, exec-script: "true"}
        """)
    )
    return path


@pytest.fixture(scope="module")
def ui(bootstrap: str, config: Path, log_dir: Path) -> Iterator[Worker]:
    env = {"POSTEE_UI_TOKEN": TOKEN, "POSTEE_UI_MAX_EVENTS": "2"}
    process = start_ui(bootstrap, config, log_dir, unique_prefix("ui-api"), env)
    yield process
    process.stop()


def test_without_credentials_pages_and_api_answer_401(ui: Worker) -> None:
    with httpx.Client(base_url=ui.base_url, timeout=10) as client:
        for path in PAGES:
            response = client.get(path)
            assert response.status_code == 401, path
            assert 'action="/login"' in response.text  # the login form, and nothing else
        for path in APIS:
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        for path in ("/api/dlq/redrive", "/api/replays"):
            assert client.post(path, json={"partition": 0, "offset": 0}).status_code == 401
        wrong = {"Authorization": "Bearer not-the-token"}
        assert client.get("/api/events", headers=wrong).status_code == 401
        client.cookies.set("postee_ui_session", TOKEN)  # the token is not the cookie
        assert client.get("/api/events").status_code == 401
        # What anyone may fetch holds no data.
        assert client.get("/healthz").status_code == 200
        assert client.get("/static/app.js").status_code == 200


def test_bearer_token_and_login_cookie(ui: Worker) -> None:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=ui.base_url, timeout=10) as client:
        assert client.get("/api/events", headers=bearer).json()["rows"] == []
        page = client.get("/", headers=bearer)
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]

        refused = client.post("/login", data={"token": "guess", "next": "/dlq"})
        assert refused.status_code == 401 and "postee_ui_session" not in refused.cookies
        accepted = client.post("/login", data={"token": TOKEN, "next": "/dlq"})
        assert accepted.status_code == 303 and accepted.headers["Location"] == "/dlq"
        set_cookie = accepted.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
        assert TOKEN not in set_cookie
        assert client.get("/api/events").status_code == 200
        assert client.get("/dlq").status_code == 200

        # A cross-site POST that carries the cookie is refused.
        evil = {"Origin": "http://evil.example"}
        body = {"from": "1h"}
        assert client.post("/api/replays", json=body, headers=evil).status_code == 403
        assert client.post("/logout").status_code == 303
        client.cookies.clear()
        assert client.get("/api/events").status_code == 401


def test_refuses_to_listen_off_loopback_without_a_token(bootstrap: str, config: Path) -> None:
    env = {
        **os.environ,
        "POSTEE_KAFKA": bootstrap,
        "POSTEE_CFG": str(config),
        "POSTEE_UI_HTTP": f"0.0.0.0:{free_port()}",
    }
    env.pop("POSTEE_UI_TOKEN", None)
    result = subprocess.run(
        [sys.executable, "-m", "streams", "ui"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "POSTEE_UI_TOKEN" in result.stderr and "without authentication" in result.stderr


async def test_timeline_of_an_event_the_index_dropped(ui: Worker) -> None:
    """The index keeps 2 events here: the first of 3 is read up to an hour after its
    arrival, with a note, or to the end of every partition on request."""
    ids = [records.new_event_id() for _ in range(3)]
    for event_id in ids:
        await produce(
            ui.bootstrap,
            ui.topic("events"),
            b'{"n": 1}',
            key=event_id.encode(),
            headers=records.event_headers(event_id, "kafka", records.utc_now()),
        )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=ui.base_url, headers=headers, timeout=10) as client:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            rows = (await client.get("/api/events")).json()["rows"]
            if [r["event_id"] for r in rows] == ids[:0:-1]:
                break
            await asyncio.sleep(0.1)  # poll interval, bounded by the deadline above
        else:
            raise AssertionError(f"the index never held the last two events: {rows}")
        held = (await client.get(f"/api/events/{ids[2]}")).json()
        assert held["read_until"] is None and [e["kind"] for e in held["entries"]] == ["received"]
        dropped = (await client.get(f"/api/events/{ids[0]}")).json()
        assert dropped["read_until"] is not None and len(dropped["entries"]) == 1
        page = await client.get(f"/events/{ids[0]}")
        assert "an hour after its arrival" in page.text and "?full=1" in page.text
        full = (await client.get(f"/api/events/{ids[0]}?full=1")).json()
        assert full["read_until"] is None and full["entries"][0]["value"] == {"n": 1}


def test_https_with_the_same_login(bootstrap: str, config: Path, log_dir: Path, module_tmp: Path):
    cert, key = self_signed_cert(module_tmp)
    env = {"POSTEE_UI_TOKEN": TOKEN, "POSTEE_UI_TLS_CERT": str(cert), "POSTEE_UI_TLS_KEY": str(key)}
    port = free_port()
    env["POSTEE_UI_HTTP"] = f"127.0.0.1:{port}"
    # start_ui polls http://; this one answers https:// only, so start it by hand.
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "ui"],
        cwd=REPO,
        env={**os.environ, "POSTEE_KAFKA": bootstrap, "POSTEE_CFG": str(config), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"https://127.0.0.1:{port}"
        with httpx.Client(
            base_url=base, verify=ssl.create_default_context(cafile=str(cert)), timeout=5
        ) as client:
            end = time.monotonic() + DEADLINE_S
            while True:
                assert process.poll() is None and time.monotonic() < end, "no HTTPS UI"
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)  # readiness poll with a deadline
            assert client.get("/api/events").status_code == 401
            accepted = client.post("/login", data={"token": TOKEN})
            assert accepted.status_code == 303 and "Secure" in accepted.headers["Set-Cookie"]
            assert client.get("/api/events").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
