"""Shared fixtures: where the services are, and guards against leaks between tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: Copies of ../shared/samples (Postee's own test data and Tracee events), kept in the repo
#: so a clean clone tests on its own.
SAMPLES = REPO / "tests" / "samples"


def services_required() -> bool:
    """`.ci/run` sets POSTEE_REQUIRE_SERVICES=1: a missing service fails the run, never skips."""
    return os.environ.get("POSTEE_REQUIRE_SERVICES") == "1"


def service_env() -> dict[str, str]:
    """Variables written by `make services` (.services/env), under the process's own."""
    values: dict[str, str] = {}
    env_file = REPO / ".services" / "env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            line = line.removeprefix("export ").strip()
            if "=" in line and not line.startswith("#"):
                name, _, value = line.partition("=")
                values[name] = value.strip("'\"")
    return {**values, **{k: v for k, v in os.environ.items() if k in values}}


def missing_service(reason: str) -> None:
    if services_required():
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)  # only without POSTEE_REQUIRE_SERVICES=1: CI fails above instead


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from POSTEE_* variables: a test must not see another test's."""
    for name in list(os.environ):
        if name.startswith("POSTEE_") and name not in ("POSTEE_REQUIRE_SERVICES", "POSTEE_KAFKA"):
            monkeypatch.delenv(name)


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, made with openssl, for HTTPS tests."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def samples() -> Path:
    return SAMPLES
