"""docker-compose.yml: valid for Debian's docker-compose 1.29, and wired the way the app needs.

The validation tests run `docker-compose config -q`, which parses and checks the file
against the Compose schema without a Docker daemon. Without docker-compose they are
skipped, unless POSTEE_REQUIRE_SERVICES=1 (CI, `scripts/install`ed machines): then a
missing tool is a failure, not a silent skip.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import missing_service

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICE = "postee"
KAFKA_SERVICE = "kafka"


def docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        missing_service(
            "docker-compose is not installed (Debian: `apt-get install docker-compose`, "
            "or run scripts/install)"
        )
    assert path is not None
    return path


def compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [docker_compose(), "-f", str(compose_file), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=compose_file.parent,
    )


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either of Compose's two forms (mapping or list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: str(value) for key, value in env.items()}


def listeners(value: str) -> dict[str, str]:
    """`NAME://host:port,...` -> {NAME: host:port}."""
    pairs = (item.strip().split("://", 1) for item in value.split(",") if item.strip())
    return {name: address for name, address in pairs}


# --- docker-compose config ----------------------------------------------------------------


def test_compose_file_is_valid() -> None:
    result = compose_config(COMPOSE_FILE)
    assert result.returncode == 0, (
        f"docker-compose config -q failed ({result.returncode}):\n{result.stderr}"
    )


def test_a_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    """The check above means something: a typo'd key makes the same command fail."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    broken_text = text.replace("\n    healthcheck:\n", "\n    healthchek:\n", 1)
    assert broken_text != text, "no `healthcheck:` key left to break in docker-compose.yml"
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(broken_text, encoding="utf-8")

    result = compose_config(broken)

    assert result.returncode != 0, "docker-compose accepted a file with an unknown key"
    assert "healthchek" in result.stderr, result.stderr


# --- wiring ---------------------------------------------------------------------------------


def test_app_reaches_kafka_on_its_internal_listener() -> None:
    services = load_compose()["services"]
    kafka_env = environment(services[KAFKA_SERVICE])
    app_env = environment(services[APP_SERVICE])

    advertised = listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    inter_broker = kafka_env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    internal = advertised[inter_broker]
    host, _, port = internal.rpartition(":")

    assert app_env["POSTEE_KAFKA"] == internal == "kafka:19092"
    # The name the app resolves is the kafka service's own name on the compose network.
    assert host in (KAFKA_SERVICE, services[KAFKA_SERVICE].get("hostname"))
    # ... and the broker actually listens there, not only advertises it.
    bound = listeners(kafka_env["KAFKA_LISTENERS"])
    assert bound[inter_broker].rpartition(":")[2] == port
    # The host listener is advertised as localhost:9092 and published on the same port.
    assert "localhost:9092" in advertised.values()
    assert any(str(p).startswith("9092:9092") for p in services[KAFKA_SERVICE]["ports"])


def test_app_starts_after_a_healthy_kafka() -> None:
    services = load_compose()["services"]
    assert services[APP_SERVICE]["depends_on"][KAFKA_SERVICE]["condition"] == "service_healthy"
    assert "healthcheck" in services[KAFKA_SERVICE]


def test_mounted_config_exists_in_the_repo() -> None:
    service = load_compose()["services"][APP_SERVICE]
    cfg_in_container = environment(service)["POSTEE_CFG"]
    mounts = {}
    for volume in service.get("volumes", []):
        source, target, *_ = str(volume).split(":")
        mounts[target] = source

    assert cfg_in_container in mounts, f"nothing is mounted at POSTEE_CFG={cfg_in_container}"
    source = mounts[cfg_in_container]
    assert source.startswith("."), f"expected a path relative to the repo, got {source}"
    on_host = (ROOT / source).resolve()
    assert on_host.is_file(), f"{source} (mounted at {cfg_in_container}) is not a file"
    assert on_host.is_relative_to(ROOT)
