"""The shipped templates (rego-templates/) rendered against the samples, compared with
golden files. Regenerate after a deliberate change with `UPDATE_GOLDENS=1 pytest ...`
and review the diff."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from streams.config import Template
from streams.templates import TemplateRenderer

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
SAMPLES = REPO / "tests" / "samples"

CASES = [
    ("postee.rawmessage.json", "tracee/trc-2-anti-debugging.json"),
    ("postee.rawmessage.json", "upstream/simple-input.json"),
    ("postee.rawmessage.html", "tracee/trc-7-ld-preload.json"),
    ("postee.rawmessage.html", "upstream/aqua-incident-input.json"),
    ("postee.tracee", "tracee/trc-2-anti-debugging.json"),
    ("postee.tracee", "tracee/trc-7-ld-preload.json"),
    ("postee.tracee", "tracee/trc-12-illegitimate-shell.json"),
    ("postee.trivy", "upstream/trivy-input.json"),
    ("postee.trivy", "upstream/trivy-aws-findings.json"),
    ("postee.trivyoperator", "upstream/trivy-operator-input.json"),
    ("postee.trivy.cyclonedx", "upstream/trivy-input.json"),
]


@pytest.fixture(scope="module")
def renderer() -> TemplateRenderer:
    packages = sorted({package for package, _ in CASES})
    templates = {p: Template(p, rego_package=p) for p in packages}
    return TemplateRenderer.compile(templates, REPO / "rego-templates")


@pytest.mark.parametrize(("package", "sample"), CASES)
def test_rendering_matches_golden(renderer, package, sample):
    event = json.loads((SAMPLES / sample).read_text())
    rendered = renderer.render(package, event)
    text = f"title: {rendered.title}\nurl: {rendered.url}\n---\n{rendered.description}\n"
    golden = GOLDEN / package / (Path(sample).stem + ".txt")
    if os.environ.get("UPDATE_GOLDENS") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()


def test_every_template_renders_every_sample(renderer):
    """No sample, however foreign to a template, leaves title or result undefined."""
    for sample in sorted(SAMPLES.rglob("*.json")):
        event = json.loads(sample.read_text())
        for package in {p for p, _ in CASES}:
            rendered = renderer.render(package, event)
            assert rendered.title and rendered.description is not None, (package, sample)


def test_raw_json_description_is_the_event(renderer):
    event = json.loads((SAMPLES / "upstream" / "trivy-input.json").read_text())
    assert json.loads(renderer.render("postee.rawmessage.json", event).description) == event


def test_raw_html_escapes_event_strings(renderer):
    event = {"name": '<script>alert("x")</script> & co'}
    html = renderer.render("postee.rawmessage.html", event).description
    assert "<script>" not in html and "&lt;script&gt;" in html and "&amp; co" in html
