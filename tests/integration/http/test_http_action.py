"""The http action against a real server on 127.0.0.1 (no request mocks)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from actions.base import ActionPermanentError, ActionRequest, ActionTemporaryError
from actions.http import HttpAction
from tests.conftest import self_signed_cert
from tests.http_sink import Sink, http_sink

EVENT = {
    "SigMetadata": {"ID": "TRC-2", "Properties": {"Severity": 3}},
    "Context": {"hostName": "node-1", "podName": "api-7c9d", "args": [{"name": "request"}]},
    "labels": {"app.kubernetes.io/name": "api"},
}


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


@pytest.fixture
async def action() -> AsyncIterator[HttpAction]:
    async with HttpAction() as instance:
        yield instance


def request(params: dict, event: dict = EVENT, text: str | None = None, **extra) -> ActionRequest:
    return ActionRequest(
        command_id="f" * 32,
        event_id="e1",
        action="ship",
        params=params,
        event=event,
        event_text=text if text is not None else json.dumps(event),
        timeout_s=extra.pop("timeout_s", 5.0),
        **extra,
    )


async def test_method_headers_and_body_content_with_tokens(sink, action):
    params = {
        "url": sink.base_url + "/hook/event.input.SigMetadata.ID",
        "method": "put",
        "headers": {
            "X-Team": ["secops", "event.input.Context.hostName"],
            "X-Sev": "sev-event.input.SigMetadata.Properties.Severity",
        },
        "body-content": "sig=event.input.SigMetadata.ID host=event.input.Context.hostName\n"
        "first arg: event.input.Context.args.0.name, "
        "app: event.input.labels.app\\.kubernetes\\.io\\/name, "
        "props: event.input.SigMetadata.Properties, gone: [event.input.nope]",
    }
    result = await action.execute(request(params))
    assert result.status == "succeeded" and result.detail["status_code"] == 200
    (seen,) = sink.on("/hook/TRC-2")
    assert seen.method == "PUT"
    assert seen.body.decode() == (
        'sig=TRC-2 host=node-1\nfirst arg: request, app: api, props: {"Severity":3}, gone: []'
    )
    assert seen.headers["X-Sev"] == "sev-3"
    assert seen.headers["X-Team"] == "secops, node-1"
    assert seen.headers["Idempotency-Key"] == "f" * 32
    assert base64.b64decode(seen.headers["Postee-Event"]).decode() == json.dumps(EVENT)
    assert result.detail["unresolved_tokens"] == ["event.input.nope"]
    assert result.detail["response_excerpt"] == "answer 200"


async def test_body_file_is_read_at_execution(sink, action, tmp_path: Path):
    log = tmp_path / "forensics.log"
    log.write_text('{"line": 1}\n{"line": 2}\n')
    result = await action.execute(
        request({"url": sink.base_url + "/upload", "body-file": str(log)})
    )
    assert result.status == "succeeded"
    assert sink.on("/upload")[0].body == log.read_bytes()
    assert sink.on("/upload")[0].method == "POST"  # the default method


async def test_missing_body_file_is_permanent(sink, action, tmp_path: Path):
    with pytest.raises(ActionPermanentError, match="body-file"):
        await action.execute(
            request({"url": sink.base_url + "/x", "body-file": str(tmp_path / "no")})
        )
    assert sink.requests == []


async def test_large_description_leaves_out_postee_event_header(sink, action):
    text = "d" * 10_000
    result = await action.execute(request({"url": sink.base_url + "/big"}, text=text))
    assert result.status == "succeeded"
    assert "Postee-Event" not in sink.on("/big")[0].headers
    assert "Postee-Event header left out" in result.detail["notes"][0]


async def test_timeout_is_a_temporary_error(sink, action):
    sink.script["/slow"] = [3.0]
    with pytest.raises(ActionTemporaryError, match="timed out") as caught:
        await action.execute(request({"url": sink.base_url + "/slow"}, timeout_s=0.3))
    assert caught.value.detail["url"] == sink.base_url + "/slow"


async def test_5xx_and_429_are_temporary_with_retry_after(sink, action):
    sink.script["/busy"] = [503]
    with pytest.raises(ActionTemporaryError, match="503") as caught:
        await action.execute(request({"url": sink.base_url + "/busy"}))
    assert caught.value.detail["status_code"] == 503
    sink.script["/limited"] = [429]
    sink.extra_headers["/limited"] = {"Retry-After": "7"}
    with pytest.raises(ActionTemporaryError) as caught:
        await action.execute(request({"url": sink.base_url + "/limited"}))
    assert caught.value.retry_after_s == 7.0


async def test_4xx_is_a_final_failed_result(sink, action):
    sink.script["/bad"] = [400]
    result = await action.execute(request({"url": sink.base_url + "/bad"}))
    assert (
        result.status == "failed" and result.detail["status_code"] == 400 and "400" in result.error
    )


async def test_connection_refused_is_temporary(action):
    from tests.kafka_support import free_port

    with pytest.raises(ActionTemporaryError, match="connection failed"):
        await action.execute(request({"url": f"http://127.0.0.1:{free_port()}/"}))


async def test_redirects_are_not_followed_unless_asked(sink, action):
    sink.script["/moved"] = [302, 302]
    sink.extra_headers["/moved"] = {"Location": "/target"}
    result = await action.execute(request({"url": sink.base_url + "/moved"}))
    assert (
        result.status == "failed" and result.detail["status_code"] == 302 and not sink.on("/target")
    )
    result = await action.execute(
        request({"url": sink.base_url + "/moved", "follow-redirects": True})
    )
    assert result.status == "succeeded" and sink.on("/target")


async def test_header_injection_is_refused(sink, action):
    event = {"evil": "x\r\nX-Injected: yes"}
    with pytest.raises(ActionPermanentError, match="line break"):
        await action.execute(
            request(
                {"url": sink.base_url + "/h", "headers": {"X-A": ["event.input.evil"]}}, event=event
            )
        )


async def test_url_values_are_escaped(sink, action):
    event = {"name": "../admin?x=1#frag"}
    await action.execute(request({"url": sink.base_url + "/items/event.input.name"}, event=event))
    (seen,) = sink.requests
    assert seen.path == "/items/../admin?x=1#frag" and seen.query == ""


async def test_dry_run_sends_nothing(sink, action):
    result = await action.execute(
        request({"url": sink.base_url + "/dry", "body-content": "b"}, dry_run=True)
    )
    assert result.status == "dry_run" and result.detail["url"] == sink.base_url + "/dry"
    assert sink.requests == []


async def test_response_excerpt_is_bounded(sink):
    async with HttpAction(max_response_bytes=5) as small:
        result = await small.execute(request({"url": sink.base_url + "/r"}))
    assert result.detail["response_excerpt"] == "answe" and result.detail["response_truncated"]


async def test_tls_is_verified_unless_the_action_says_not(tmp_path: Path):
    import ssl

    from aiohttp import web

    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="tls ok")

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with HttpAction() as action:
            with pytest.raises(ActionPermanentError, match="TLS verification failed"):
                await action.execute(request({"url": url}))
            result = await action.execute(request({"url": url, "tls-verify": False}))
        assert result.status == "succeeded" and result.detail["response_excerpt"] == "tls ok"
    finally:
        await runner.cleanup()


async def test_no_cookie_travels_from_one_command_to_the_next(sink, action):
    sink.extra_headers["/login"] = {"Set-Cookie": "session=from-the-first-server; Path=/"}
    await action.execute(request({"url": sink.base_url + "/login"}))
    await action.execute(request({"url": sink.base_url + "/next"}))
    assert sink.on("/login") and "Cookie" not in sink.on("/next")[0].headers


async def test_only_the_configured_content_type_is_sent(sink, action):
    await action.execute(request({"url": sink.base_url + "/plain", "body-content": "x"}))
    assert "Content-Type" not in sink.on("/plain")[0].headers  # none guessed for bytes
    headers = {"Content-Type": ["application/json"]}
    await action.execute(
        request({"url": sink.base_url + "/json", "body-content": "{}", "headers": headers})
    )
    assert sink.on("/json")[0].headers["Content-Type"] == "application/json"


async def test_endless_redirects_are_a_final_error(sink, action):
    sink.script["/loop"] = [302] * 30
    sink.extra_headers["/loop"] = {"Location": "/loop"}
    with pytest.raises(ActionPermanentError, match="gave up after 10 redirects"):
        await action.execute(request({"url": sink.base_url + "/loop", "follow-redirects": True}))
    assert len(sink.on("/loop")) == 10  # each answered with a redirect


async def test_a_url_that_does_not_parse_is_a_final_error(action):
    with pytest.raises(ActionPermanentError, match="invalid URL"):
        await action.execute(request({"url": "http://[::1/broken"}))
