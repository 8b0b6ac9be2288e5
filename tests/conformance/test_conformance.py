"""Conformance with OPA, the reference engine: Postee's template families and rego-filters,
on realistic Aqua, Trivy, trivy-operator and Tracee events. The expected value of every
case comes from the real `opa eval` at test time (built by `scripts/opa`), never by hand.

`jsonformat` is Postee's own built-in, which OPA lacks too: both engines get the same
Rego definition of it (`rego.JSONFORMAT`, Postee's Go `json.MarshalIndent(x, "", " ")`).
Normalised: only JSON encoding (a `result` that is not a string is compared as JSON).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streams import rego_compat
from streams.config import Template
from streams.evaluator import EngineSpec, Evaluator
from streams.rules import RouteMatcher, RouteRule
from streams.templates import TemplateRenderer
from tests.conftest import REPO, SAMPLES, missing_service, service_env

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
FILTERS = HERE / "filters"
AQUA = "upstream/aqua-input.json"
TRIVY = "upstream/trivy-input.json"
OPERATOR = "upstream/trivy-operator-input.json"
TRACEE = ["tracee/trc-2-anti-debugging.json", "tracee/trc-7-ld-preload.json"]
ALL = [AQUA, "upstream/all-in-one-image.json", TRIVY, OPERATOR, *TRACEE]

#: Cases where rego-cpp 1.5.2 (regopy) still differs from OPA; strict xfails, so a fixed
#: engine turns them into failures to remove from here.
KNOWN_GAPS: dict[tuple[str, str], str] = {}

#: (template package, samples)
TEMPLATE_CASES = [
    ("conformance.raw.json", ALL),
    ("conformance.raw.html", ALL),
    ("conformance.vuls.html", [AQUA, "upstream/all-in-one-image.json"]),
    ("conformance.vuls.slack", [AQUA, "upstream/all-in-one-image.json"]),
    ("conformance.vuls.jira", [AQUA]),
    ("conformance.trivy.slack", [TRIVY]),
    ("conformance.trivy.jira", [TRIVY]),
    ("conformance.trivyoperator.slack", [OPERATOR]),
    ("conformance.trivyoperator.jira", [OPERATOR]),
    ("conformance.cyclonedx", [AQUA]),
    ("conformance.servicenow.incident", ["upstream/aqua-incident-input.json"]),
    ("conformance.servicenow.insight", ["upstream/aqua-insight-input.json"]),
    ("conformance.tracee.html", TRACEE),
    ("conformance.tracee.slack", TRACEE),
]
FILTER_CASES = sorted(path.name for path in FILTERS.glob("*.rego"))


@pytest.fixture(scope="session")
def opa() -> Path:
    """The OPA binary: POSTEE_OPA from .services/env, else `scripts/opa build` (cached;
    a cold build takes minutes)."""
    named = service_env().get("POSTEE_OPA")
    if named and Path(named).is_file():
        return Path(named)
    try:
        built = subprocess.run(
            [str(REPO / "scripts" / "opa"), "build"],
            capture_output=True,
            text=True,
            timeout=1200,
            check=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        missing_service(f"OPA could not be built: {exc}")
    return Path(built.stdout.strip())


def opa_eval(opa: Path, policies: list[Path], document: Any, query: str, tmp: Path) -> Any:
    # Postee's filters are Rego v0 (`allow { ... }`); OPA 1.x parses v0 with this flag.
    args = [str(opa), "eval", "--v0-compatible", "--format", "json", "--stdin-input", query]
    for number, policy in enumerate(policies):
        copy = tmp / f"{number}-{policy.name}"
        copy.write_text(rego_compat.with_jsonformat(policy.read_text()))  # OPA lacks it as well
        args += ["-d", str(copy)]
    out = subprocess.run(
        args, input=json.dumps(document), capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout).get("result")
    return result[0]["expressions"][0]["value"] if result else None


def sample(name: str) -> tuple[bytes, Any]:
    raw = (SAMPLES / name).read_bytes()
    return raw, json.loads(raw)


def template_files(package: str) -> list[Path]:
    found = [p for p in TEMPLATES.glob("*.rego") if f"package {package}\n" in p.read_text()]
    aggregation = [
        p for p in TEMPLATES.glob("*.rego") if f"package {package}.aggregation\n" in p.read_text()
    ]
    return found + aggregation


def ours(package: str, raw: bytes) -> dict[str, Any]:
    renderer = TemplateRenderer.compile(
        {package: Template(package, rego_package=package)}, TEMPLATES
    )
    spec = EngineSpec(RouteMatcher.compile([RouteRule("r")]).spec, renderer.sources, {"r": package})
    evaluation = Evaluator(spec).evaluate(raw)  # as an evaluator process does
    assert evaluation.error is None and not evaluation.template_errors, evaluation
    return dict(evaluation.rendered[package])


@pytest.mark.parametrize(
    ("package", "name"),
    [
        pytest.param(p, s, marks=[pytest.mark.xfail(reason=KNOWN_GAPS[p, s], strict=True)])
        if (p, s) in KNOWN_GAPS
        else (p, s)
        for p, samples in TEMPLATE_CASES
        for s in samples
    ],
)
def test_template_gives_opas_result(opa: Path, tmp_path: Path, package: str, name: str) -> None:
    raw, document = sample(name)
    expected = opa_eval(opa, template_files(package), document, f"data.{package}", tmp_path)
    rendered = ours(package, raw)
    assert rendered["title"] == expected["title"]
    result = expected["result"]
    got = (
        rendered["description"] if isinstance(result, str) else json.loads(rendered["description"])
    )
    assert got == result
    assert rendered["url"] == expected.get("url")


def test_aggregation_package_gives_opas_result(opa: Path, tmp_path: Path) -> None:
    package = "conformance.vuls.slack"
    messages = [ours(package, sample(name)[0]) for name in (AQUA, "upstream/all-in-one-image.json")]
    query = f"data.{package}.aggregation"
    expected = opa_eval(opa, template_files(package), messages, query, tmp_path)
    renderer = TemplateRenderer.compile(
        {package: Template(package, rego_package=package)}, TEMPLATES
    )
    rendered = renderer.render_batch(package, messages)
    assert rendered is not None
    assert (rendered.title, json.loads(rendered.description)) == (
        expected["title"],
        expected["result"],
    )


FILTER_SAMPLES = [*ALL, "upstream/trivy-aws-findings.json", "upstream/simple-input.json"]


@pytest.mark.parametrize("filter_name", FILTER_CASES)
def test_filter_gives_opas_decision(opa: Path, tmp_path: Path, filter_name: str) -> None:
    path = FILTERS / filter_name
    matcher = RouteMatcher.compile([RouteRule("f", input_files=(path,))])
    evaluator = Evaluator(EngineSpec(matcher.spec, {}, {}))
    decisions = []
    for name in FILTER_SAMPLES:
        raw, document = sample(name)
        expected = opa_eval(opa, [path], document, "data.postee.allow", tmp_path) is True
        decisions.append(expected)
        assert (evaluator.evaluate(raw).matched == {"f"}) == expected, name
    assert True in decisions  # each filter matches at least one sample: a real test
