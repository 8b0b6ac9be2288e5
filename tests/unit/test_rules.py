"""Route rules: Postee's matching semantics, on one bundle and one engine call per event."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from streams.rules import (
    MAX_INPUT_DEPTH,
    RouteMatcher,
    RouteRule,
    RuleCompileError,
    RuleEvaluationError,
)

#: The repo's copies of shared/samples (Postee's own test data, Tracee events).
SAMPLES = Path(__file__).resolve().parents[1] / "samples"

TRC_2 = 'input.SigMetadata.ID == "TRC-2"'


def load(relative: str) -> dict[str, object]:
    value = json.loads((SAMPLES / relative).read_text())
    assert isinstance(value, dict)
    return value


@pytest.fixture(scope="module")
def tracee() -> dict[str, object]:
    return load("tracee/trc-2-anti-debugging.json")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def match(rules: list[RouteRule], event: object) -> frozenset[str]:
    return RouteMatcher.compile(rules).evaluate(event)


# -- inline rules ------------------------------------------------------------------------


def test_inline_rule_matches_tracee_signature(tracee: dict[str, object]) -> None:
    rules = [RouteRule("trc-2", TRC_2), RouteRule("trc-7", 'input.SigMetadata.ID == "TRC-7"')]
    assert match(rules, tracee) == {"trc-2"}
    assert match(rules, load("tracee/trc-7-ld-preload.json")) == {"trc-7"}


def test_inline_lines_are_anded(tracee: dict[str, object]) -> None:
    both = f'{TRC_2}\ninput.Context.processName == "strace"\n'
    one_false = f'{TRC_2}\n\ninput.Context.processName == "bash"'
    rules = [RouteRule("both", both), RouteRule("one-false", one_false)]
    assert match(rules, tracee) == {"both"}


def test_inline_rule_may_bind_variables_and_iterate(tracee: dict[str, object]) -> None:
    body = (
        "some arg in input.Context.args\n"
        'arg.value == "PTRACE_TRACEME"\n'
        "n := count(input.SigMetadata.Tags)\n"
        "n == 2\n"
        'every tag in input.SigMetadata.Tags { tag != "" }'
    )
    assert match([RouteRule("ptrace", body)], tracee) == {"ptrace"}


def test_empty_rule_matches_every_object(tracee: dict[str, object]) -> None:
    rules = [RouteRule("none"), RouteRule("empty", ""), RouteRule("blank", "  \n\t\n")]
    matcher = RouteMatcher.compile(rules)
    assert matcher.evaluate(tracee) == {"none", "empty", "blank"}
    assert matcher.evaluate({}) == {"none", "empty", "blank"}


@pytest.mark.parametrize("event", [[1, 2], ["a"], "text", 42, 1.5, None, True, b"{}"])
def test_non_object_event_matches_nothing(event: object) -> None:
    matcher = RouteMatcher.compile([RouteRule("all"), RouteRule("rule", "true")])
    assert matcher.evaluate(event) == frozenset()
    assert matcher.evaluate(event, only="all") == frozenset()


def test_upstream_image_rule_on_upstream_samples() -> None:
    # Postee's own regocheck test: `contains(input.image, "alpine")`.
    rules = [
        RouteRule("alpine", 'contains(input.image, "alpine")'),
        RouteRule("demo", 'input.user == "demo"'),
    ]
    matcher = RouteMatcher.compile(rules)
    assert matcher.evaluate(load("upstream/simple-input.json")) == {"demo"}  # has no image
    assert matcher.evaluate({"image": "alpine:26"}) == {"alpine"}
    assert matcher.evaluate({"image": "1science:latest"}) == frozenset()


def test_trivy_report_rules() -> None:
    critical_log4j = (
        "some result in input.Results\n"
        "some vuln in result.Vulnerabilities\n"
        'vuln.Severity == "CRITICAL"\n'
        'startswith(vuln.PkgName, "log4j")'
    )
    rules = [
        RouteRule("critical-log4j", critical_log4j),
        RouteRule("images-only", 'input.ArtifactType == "container_image"'),
        RouteRule(
            "log4shell", 'input.Results[_].Vulnerabilities[_].VulnerabilityID == "CVE-2021-44228"'
        ),
        RouteRule("pom", 'input.ArtifactName == "pom.xml"'),
    ]
    assert match(rules, load("upstream/trivy-input.json")) == {"critical-log4j", "pom"}


# -- input-files ------------------------------------------------------------------------


def test_input_files_are_ored_and_replace_input(tmp_path: Path) -> None:
    # Each file is a standalone filter with its own `default allow = false`.
    strace = write(
        tmp_path,
        "strace.rego",
        "package postee\n"
        "default allow = false\n"
        'allow {\n  input.Context.processName == "strace"\n}\n',
    )
    bash = write(
        tmp_path,
        "bash.rego",
        "package postee\n"
        "import rego.v1\n"
        "default allow := false\n"
        'allow if input.Context.processName == "bash"\n',
    )
    route = RouteRule("shells", input="false", input_files=(strace, bash))
    matcher = RouteMatcher.compile([route])
    for name, expected in [("strace", {"shells"}), ("bash", {"shells"}), ("sh", set())]:
        assert matcher.evaluate({"Context": {"processName": name}}) == expected


def test_v0_and_v1_files_with_helpers(tmp_path: Path, tracee: dict[str, object]) -> None:
    v0 = write(
        tmp_path,
        "v0.rego",
        "package postee\nimport future.keywords.in\n\n"
        'Permitted := {"strace", "gdb"}\n'
        "default PermitName = false\n"
        "PermitName = true {\n  some n in Permitted\n  contains(input.Context.processName, n)\n}\n"
        "allow{\n   PermitName\n}\n",
    )
    v1 = write(
        tmp_path,
        "v1.rego",
        "package postee\nimport rego.v1\n\n"
        "severe(props) if props.Severity >= 3\n"
        "allow if {\n  severe(input.SigMetadata.Properties)\n}\n",
    )
    rules = [RouteRule("v0", input_files=(v0,)), RouteRule("v1", input_files=(v1,))]
    assert match(rules, tracee) == {"v0", "v1"}


def test_allow_must_be_boolean_true(tmp_path: Path) -> None:
    # Upstream matches only when data.postee.allow is the boolean true.
    text = write(tmp_path, "yes.rego", 'package postee\nallow = "yes" { true }\n')
    assert match([RouteRule("yes", input_files=(text,))], {"a": 1}) == frozenset()


def test_postee_subpackages_and_outside_libraries(tmp_path: Path) -> None:
    helper = write(
        tmp_path, "helper.rego", 'package postee.lib\nis_prod(ns) { endswith(ns, "-prod") }\n'
    )
    uses = write(
        tmp_path,
        "uses.rego",
        "package postee\nimport data.postee.lib\nallow { lib.is_prod(input.ns) }\n",
    )
    shared = write(tmp_path, "shared.rego", 'package company.tags\nwatched := {"pci", "pii"}\n')
    tagged = write(
        tmp_path, "tagged.rego", "package postee\nallow { data.company.tags.watched[input.tag] }\n"
    )
    rules = [
        RouteRule("prod", input_files=(helper, uses)),
        RouteRule("tag-a", input_files=(shared, tagged)),
        RouteRule("tag-b", input_files=(shared, tagged)),  # the shared library, twice
    ]
    matcher = RouteMatcher.compile(rules)
    assert matcher.evaluate({"ns": "pay-prod", "tag": "pci"}) == {"prod", "tag-a", "tag-b"}
    assert matcher.evaluate({"ns": "pay-dev", "tag": "x"}) == frozenset()


# -- names, only, many routes ------------------------------------------------------------

ODD_NAMES = ["with space", 'quote\'s "double"', "dots.in.name", "r0", "ünïcode {}", "a]b[c", ""]


def test_odd_route_names(tracee: dict[str, object]) -> None:
    rules = [RouteRule(name, TRC_2 if i % 2 == 0 else "false") for i, name in enumerate(ODD_NAMES)]
    matcher = RouteMatcher.compile(rules)
    assert matcher.route_names == tuple(ODD_NAMES)
    assert matcher.evaluate(tracee) == {name for i, name in enumerate(ODD_NAMES) if i % 2 == 0}
    assert matcher.evaluate(tracee, only='quote\'s "double"') == frozenset()
    assert matcher.evaluate(tracee, only="dots.in.name") == {"dots.in.name"}


def test_only_restricts_to_one_route(tracee: dict[str, object]) -> None:
    rules = [
        RouteRule("a", TRC_2),
        RouteRule("b", TRC_2),
        RouteRule("all"),
        RouteRule("no", "false"),
    ]
    matcher = RouteMatcher.compile(rules)
    assert matcher.evaluate(tracee) == {"a", "b", "all"}
    assert matcher.evaluate(tracee, only="b") == {"b"}
    assert matcher.evaluate(tracee, only="all") == {"all"}
    assert matcher.evaluate(tracee, only="no") == frozenset()
    with pytest.raises(KeyError):
        matcher.evaluate(tracee, only="missing")


def test_fifty_routes_return_the_right_subset(tmp_path: Path) -> None:
    rules = []
    for i in range(50):
        if i % 10 == 9:
            rules.append(RouteRule(f"route {i}"))  # match-all
        elif i % 3 == 0:
            path = write(
                tmp_path,
                f"f{i}.rego",
                f"package postee\ndefault allow = false\nallow {{ input.level >= {i} }}\n",
            )
            rules.append(RouteRule(f"route {i}", input_files=(path,)))
        else:
            rules.append(
                RouteRule(
                    f"route {i}",
                    f'input.level >= {i}\ninput.kind == "{"odd" if i % 2 else "even"}"',
                )
            )
    matcher = RouteMatcher.compile(rules)
    for level, kind in [(0, "odd"), (25, "even"), (25, "odd"), (99, "even")]:
        expected = {
            f"route {i}"
            for i in range(50)
            if i % 10 == 9 or (level >= i and (i % 3 == 0 or kind == ("odd" if i % 2 else "even")))
        }
        assert matcher.evaluate({"level": level, "kind": kind}) == expected


# -- compile errors ----------------------------------------------------------------------


def test_inline_compile_error_names_route_and_user_line() -> None:
    with pytest.raises(RuleCompileError) as caught:
        RouteMatcher.compile(
            [RouteRule("good", TRC_2), RouteRule("broken", f"{TRC_2}\ninput.a ==")]
        )
    assert caught.value.route == "broken"
    assert caught.value.file is None
    assert "line 2" in caught.value.message
    assert "broken" in str(caught.value)


def test_upstream_incorrect_rule_is_a_compile_error() -> None:
    errors = RouteMatcher.check([RouteRule("bad", "default input = false")])
    assert [e.route for e in errors] == ["bad"]


def test_file_compile_error_names_route_and_file(tmp_path: Path) -> None:
    good = write(tmp_path, "good.rego", "package postee\nallow { true }\n")
    bad = write(tmp_path, "bad.rego", 'package postee\n\nallow {\n  contains(input.x, "a"\n}\n')
    with pytest.raises(RuleCompileError) as caught:
        RouteMatcher.compile([RouteRule("files", input_files=(good, bad))])
    assert (caught.value.route, caught.value.file) == ("files", bad)
    assert str(bad) in str(caught.value)


def test_error_found_after_parsing_is_still_attributed(tmp_path: Path) -> None:
    # A known rego-cpp limitation: a `[_]` reference passed straight into a built-in,
    # here under `not`, where the compile-time rewrite does not apply.
    bracket = write(
        tmp_path, "bracket.rego", 'package postee\nallow { not startswith(input.a[_].id, "x") }\n'
    )
    function = write(tmp_path, "function.rego", "package postee\nallow(x) { x == 1 }\n")
    errors = RouteMatcher.check(
        [
            RouteRule("bracket", input_files=(bracket,)),
            RouteRule("function", input_files=(function,)),
        ]
    )
    assert [(e.route, e.file) for e in errors] == [("bracket", bracket), ("function", function)]
    assert "line 2" in errors[0].message
    assert "bind it first" in errors[0].message  # the way around it, spelled out


def test_missing_file_and_wrong_package(tmp_path: Path) -> None:
    missing = tmp_path / "nope.rego"
    other = write(tmp_path, "other.rego", "package something.else\nallow { true }\n")
    errors = RouteMatcher.check(
        [RouteRule("missing", input_files=(missing,)), RouteRule("other", input_files=(other,))]
    )
    assert [(e.route, e.file) for e in errors] == [("missing", missing), ("other", None)]
    assert "package postee" in errors[1].message


def test_check_returns_every_error_and_compile_the_first(tmp_path: Path) -> None:
    bad_file = write(tmp_path, "bad.rego", "package postee\nallow { input.x == }\n")
    rules = [
        RouteRule("ok", TRC_2),
        RouteRule("bad-inline", "input.x =="),
        RouteRule("bad-file", input_files=(bad_file,)),
        RouteRule("ok", "true"),  # duplicate name
        RouteRule("missing", input_files=(tmp_path / "missing.rego",)),
    ]
    errors = RouteMatcher.check(rules)
    assert [e.route for e in errors] == ["bad-inline", "bad-file", "ok", "missing"]
    assert RouteMatcher.check(rules[:1]) == []
    with pytest.raises(RuleCompileError) as caught:
        RouteMatcher.compile(rules)
    assert caught.value.route == "bad-inline"


def test_compile_errors_print_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    RouteMatcher.check(
        [RouteRule("bad", "input.x =="), RouteRule("bad2", 'startswith(input.a[_], "x")')]
    )
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


# -- evaluation errors -------------------------------------------------------------------


@pytest.mark.parametrize("container", ["object", "array"])
def test_very_deep_event_is_refused(container: str) -> None:
    matcher = RouteMatcher.compile([RouteRule("rule", "input.a == 1"), RouteRule("all")])
    deep: object = "bottom"
    for _ in range(10_000):
        deep = {"a": deep} if container == "object" else [deep]
    with pytest.raises(RuleEvaluationError) as caught:
        matcher.evaluate({"a": deep})
    assert "deeper" in caught.value.reason
    assert matcher.evaluate({"a": 1}) == {"rule", "all"}  # the matcher still works


def test_depth_limit_is_exact() -> None:
    matcher = RouteMatcher.compile([RouteRule("rule", "true")])
    event: dict[str, object] = {}
    for _ in range(MAX_INPUT_DEPTH - 1):
        event = {"a": event}
    assert matcher.evaluate(event) == {"rule"}
    with pytest.raises(RuleEvaluationError):
        matcher.evaluate({"a": event})


def test_unconvertible_event_is_an_evaluation_error() -> None:
    matcher = RouteMatcher.compile([RouteRule("rule", "true")])
    with pytest.raises(RuleEvaluationError):
        matcher.evaluate({"a": object()})


def test_runtime_conflict_names_the_failing_route(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    conflict = write(
        tmp_path,
        "conflict.rego",
        "package postee\nallow = true { input.a == 1 }\nallow = false { input.b == 1 }\n",
    )
    rules = [
        RouteRule("conflict", input_files=(conflict,)),
        RouteRule("fine", "input.a == 1"),
        RouteRule("all"),
    ]
    matcher = RouteMatcher.compile(rules)
    assert matcher.evaluate({"a": 1}) == {"conflict", "fine", "all"}
    with pytest.raises(RuleEvaluationError) as caught:
        matcher.evaluate({"a": 1, "b": 1})
    assert caught.value.routes == ("conflict",)
    assert caught.value.matched == {"fine", "all"}
    assert "conflict" in caught.value.reason
    with pytest.raises(RuleEvaluationError):
        matcher.evaluate({"a": 1, "b": 1}, only="conflict")
    assert matcher.evaluate({"a": 1, "b": 1}, only="fine") == {"fine"}
    assert capfd.readouterr() == ("", "")


def test_matcher_refuses_a_second_thread(tracee: dict[str, object]) -> None:
    matcher = RouteMatcher.compile([RouteRule("trc-2", TRC_2)])
    assert matcher.evaluate(tracee) == {"trc-2"}
    failures: list[BaseException] = []

    def other() -> None:
        try:
            matcher.evaluate(tracee)
        except RuntimeError as exc:
            failures.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(failures) == 1


def test_a_bracket_reference_passed_to_a_built_in_is_rewritten(tmp_path: Path) -> None:
    lists = write(tmp_path, "lists.rego", 'package lists\nnames := {"alpine", "nginx"}\n')
    rule = write(
        tmp_path,
        "f.rego",
        "package postee\nallow { contains(input.image, data.lists.names[_]) }\n"
        'allow if startswith(input.a[_].id, "x")\n',
    )
    matcher = RouteMatcher.compile([RouteRule("r", input_files=(lists, rule))])
    assert matcher.evaluate({"image": "nginx:1"}) == {"r"}
    assert matcher.evaluate({"image": "redis", "a": [{"id": "b"}, {"id": "xy"}]}) == {"r"}
    assert matcher.evaluate({"image": "redis", "a": [{"id": "b"}]}) == frozenset()
