from __future__ import annotations

import asyncio
import os

import aiodocker
import pytest

from tests.conftest import missing_service, service_env

_PROCESS_ENV = {name: os.environ.get(name) for name in ("DOCKER_HOST", "POSTEE_TEST_IMAGE")}


def docker_setting(name: str) -> str | None:
    """The process's own value first, else the one `make services` wrote to .services/env."""
    return _PROCESS_ENV.get(name) or service_env().get(name)


@pytest.fixture(scope="session")
def engine_host() -> str:
    host = docker_setting("DOCKER_HOST")
    if not host:
        missing_service("DOCKER_HOST is not set: run `make services` first")
    assert host is not None

    async def ping() -> None:
        async with aiodocker.Docker(url=host) as client:
            await asyncio.wait_for(client.version(), 10)

    try:
        asyncio.run(ping())
    except Exception as exc:
        missing_service(f"no Docker engine answers at {host} ({exc!r}): run `make services`")
    return host


@pytest.fixture(scope="session")
def test_image() -> str:
    image = docker_setting("POSTEE_TEST_IMAGE")
    if not image:
        missing_service("POSTEE_TEST_IMAGE is not set: run `make services` first")
    assert image is not None
    return image
