"""Webhook authentication (bearer token, HMAC signature), HTTPS, and body timeouts."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import self_signed_cert
from tests.kafka_support import Worker, free_port, start_worker

pytestmark = pytest.mark.kafka

TOKEN = "t0ken-for-tests"
SECRET = "hmac-secret-for-tests"


@pytest.fixture(scope="module")
def tls(module_tmp: Path) -> tuple[Path, Path]:
    return self_signed_cert(module_tmp)


@pytest.fixture(scope="module")
def worker(bootstrap, module_tmp, log_dir, tls) -> Iterator[tuple[Worker, str]]:
    config = module_tmp / "cfg.yaml"
    config.write_text(
        textwrap.dedent("""
        routes:
          - name: all
            actions: [noop]
        actions:
          - {name: noop, type: exec, enable: true, exec-script: "true"}
    """)
    )
    https_port = free_port()
    handle = start_worker(
        bootstrap,
        config,
        log_dir,
        "secure",
        {
            "POSTEE_TOKEN": TOKEN,
            "POSTEE_HMAC_SECRET": SECRET,
            "POSTEE_HTTPS": f"127.0.0.1:{https_port}",
            "POSTEE_TLS_CERT": str(tls[0]),
            "POSTEE_TLS_KEY": str(tls[1]),
            "POSTEE_BODY_TIMEOUT_S": "1",
        },
    )
    yield handle, f"https://127.0.0.1:{https_port}"
    handle.stop()


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_token_and_signature_are_required(worker):
    handle, _ = worker
    body = json.dumps({"a": 1}).encode()
    url = handle.base_url + "/"
    cases = [
        ({}, 401),
        ({"Authorization": "Bearer wrong", "X-Postee-Signature": signed(body)}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}", "X-Postee-Signature": signed(body, "other")}, 401),
        ({"Authorization": f"Bearer {TOKEN}", "X-Postee-Signature": signed(body)}, 202),
    ]
    for headers, status in cases:
        response = httpx.post(url, content=body, headers=headers, timeout=10)
        assert response.status_code == status, (headers, response.text)
        if status == 401:
            assert response.json()["error"]
    assert httpx.get(handle.base_url + "/ping").status_code == 200  # probes stay open


def test_https_listener(worker, tls):
    _, https_url = worker
    body = json.dumps({"over": "tls"}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Postee-Signature": signed(body)}
    response = httpx.post(
        https_url + "/",
        content=body,
        headers=headers,
        verify=ssl.create_default_context(cafile=str(tls[0])),
        timeout=10,
    )
    assert response.status_code == 202 and response.json()["id"]


async def test_a_body_that_never_arrives_times_out(worker):
    handle, _ = worker
    port = int(handle.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        + b'{"partial": '
    )
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 15)
    assert b" 408 " in status_line
    writer.close()
