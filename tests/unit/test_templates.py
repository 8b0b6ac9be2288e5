"""Template compilation and rendering (inline bodies, packages from a folder, URLs)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from streams.config import Template
from streams.errors import ConfigError
from streams.templates import TemplateError, TemplateRenderer

BODY = """package custom.alert
import rego.v1
title := sprintf("Alert %s", [input.id])
result := {"id": input.id, "n": count(input.items)}
url := "https://example.test/alerts"
"""


def renderer(
    templates: dict[str, Template], folder: Path = Path("rego-templates")
) -> TemplateRenderer:
    return TemplateRenderer.compile(templates, folder)


def test_inline_body_renders_title_json_result_and_url():
    r = renderer({"t": Template("t", body=BODY)})
    out = r.render("t", {"id": "a1", "items": [1, 2]})
    assert out.title == "Alert a1"
    assert out.description == '{"id":"a1","n":2}'  # a JSON result becomes compact JSON text
    assert out.url == "https://example.test/alerts"


def test_missing_title_names_template_and_field():
    r = renderer({"t": Template("t", body=BODY)})
    with pytest.raises(TemplateError) as caught:
        r.render("t", {"items": []})  # no id: title and result are undefined
    assert caught.value.template == "t" and "title" in caught.value.reason


def test_package_from_folder_with_shared_helpers(tmp_path: Path):
    (tmp_path / "common.rego").write_text("package postee\nimport rego.v1\nshout(s) := upper(s)\n")
    (tmp_path / "mine.rego").write_text(
        'package mine.pkg\nimport rego.v1\ntitle := data.postee.shout(input.name)\nresult := "r"\n'
    )
    r = renderer({"m": Template("m", rego_package="mine.pkg")}, tmp_path)
    assert r.render("m", {"name": "x"}).title == "X"


def test_unknown_package_fails_at_compile(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        renderer({"m": Template("m", rego_package="nowhere")}, tmp_path)
    assert caught.value.where == "template 'm'" and caught.value.key == "rego-package"
    assert "nowhere" in caught.value.message


def test_rego_syntax_error_fails_at_compile():
    with pytest.raises(ConfigError) as caught:
        renderer({"bad": Template("bad", body="package b\ntitle := := 1\n")})
    assert caught.value.where == "template 'bad'" and caught.value.key == "body"


class _Rego(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = b'package fetched\nimport rego.v1\ntitle := "T"\nresult := input.x\n'
        self.send_response(200 if self.path == "/t.rego" else 404)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def rego_server():
    server = HTTPServer(("127.0.0.1", 0), _Rego)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_template_is_fetched_at_start(rego_server):
    r = renderer({"u": Template("u", url=rego_server + "/t.rego")})
    assert r.render("u", {"x": "hello"}).description == "hello"


def test_unreachable_or_missing_url_fails_at_start(rego_server):
    from tests.kafka_support import free_port

    for url in (f"http://127.0.0.1:{free_port()}/t.rego", rego_server + "/missing.rego"):
        with pytest.raises(ConfigError) as caught:
            renderer({"u": Template("u", url=url)})
        assert caught.value.where == "template 'u'" and caught.value.key == "url"


def test_aggregation_package_renders_a_batch(tmp_path: Path):
    (tmp_path / "alerts.rego").write_text(
        "package team.alerts\nimport rego.v1\n"
        'title := concat(" ", ["Alert", input.id])\nresult := input.id\n'
        'aggregation_pkg := "team.alerts.digest"\n'
    )
    (tmp_path / "digest.rego").write_text(
        "package team.alerts.digest\nimport rego.v1\n"
        'title := sprintf("%v alerts", [count(input)])\n'
        'result := concat(",", [m.description | some m in input])\n'
    )
    r = renderer({"a": Template("a", rego_package="team.alerts")}, tmp_path)
    assert r.render("a", {"id": "x1"}).title == "Alert x1"
    messages = [
        {"title": "Alert x1", "description": "x1", "url": None},
        {"title": "Alert x2", "description": "x2", "url": None},
    ]
    batch = r.render_batch("a", messages)
    assert batch is not None and (batch.title, batch.description) == ("2 alerts", "x1,x2")
    plain = renderer({"b": Template("b", body=BODY)})
    assert plain.render_batch("b", messages) is None  # no aggregation_pkg


def test_missing_aggregation_package_fails_at_compile(tmp_path: Path):
    (tmp_path / "alerts.rego").write_text(
        'package team.alerts\ntitle := "t"\nresult := "r"\naggregation_pkg := "team.nowhere"\n'
    )
    with pytest.raises(ConfigError) as caught:
        renderer({"a": Template("a", rego_package="team.alerts")}, tmp_path)
    assert "team.nowhere" in caught.value.message
