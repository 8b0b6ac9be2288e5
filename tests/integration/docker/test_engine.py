"""The Docker engine of `make services` (scripts/docker-engine), driven through aiodocker.

Real containers from the local test image POSTEE_TEST_IMAGE (busybox-static imported by
`scripts/docker-engine image`; nothing is pulled: no image registry is reachable). The
engine is DOCKER_HOST from the environment or from .services/env. Without it, or without
aiodocker, the tests skip, unless POSTEE_REQUIRE_SERVICES=1 (CI): then they fail.

Every container carries a label unique to this run, so the last test can prove that none
was left behind.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_service, service_env

try:
    import aiodocker
except ImportError:  # checked in the `docker` fixture, so the failure names the cause
    aiodocker = None

#: How long one container may take from create to exit.
DEADLINE_S = 30.0
RUN_LABEL = "org.postee.test-run"
RUN_ID = uuid.uuid4().hex


#: Read at import: the autouse `clean_environ` fixture removes POSTEE_* variables per test.
_PROCESS_ENV = {name: os.environ.get(name) for name in ("DOCKER_HOST", "POSTEE_TEST_IMAGE")}


def setting(name: str) -> str | None:
    """The process's own value first, else the one `make services` wrote to .services/env."""
    return _PROCESS_ENV.get(name) or service_env().get(name)


def run_filter() -> dict[str, list[str]]:
    return {"label": [f"{RUN_LABEL}={RUN_ID}"]}


@pytest.fixture(scope="module")
def busybox_image() -> str:
    image = setting("POSTEE_TEST_IMAGE")
    if not image:
        missing_service("POSTEE_TEST_IMAGE is not set: run `make services` first")
    return image


@pytest.fixture(scope="module")
async def docker(busybox_image: str) -> AsyncIterator[Any]:
    if aiodocker is None:
        missing_service("aiodocker is not installed in .venv: run scripts/install")
    host = setting("DOCKER_HOST")
    if not host:
        missing_service("DOCKER_HOST is not set: run `make services` first")
    client = aiodocker.Docker(url=host)
    try:
        try:
            await asyncio.wait_for(client.version(), 10)
        except Exception as exc:
            missing_service(f"no Docker engine answers at {host} ({exc!r}): run `make services`")
        try:
            await client.images.inspect(busybox_image)
        except aiodocker.DockerError as exc:
            missing_service(
                f"test image {busybox_image} is missing ({exc.message}): "
                "run `scripts/docker-engine image`"
            )
        yield client
        # Nothing of this run may outlive it.
        leftovers = await client.containers.list(all=True, filters=run_filter())
        for container in leftovers:
            await container.delete(force=True)
        assert not leftovers, f"containers left behind: {[c.id for c in leftovers]}"
    finally:
        await client.close()


async def run(
    docker: Any,
    image: str,
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    host_config: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """Runs `cmd` in a new container to its end; returns its exit code and its output.

    create + start, never `containers.run`: that one tries to pull a missing image.
    """
    config: dict[str, Any] = {
        "Image": image,
        "Cmd": cmd,
        "Env": [f"{name}={value}" for name, value in (env or {}).items()],
        "Labels": {RUN_LABEL: RUN_ID},
        "HostConfig": host_config or {},
    }
    container = await docker.containers.create(config=config)
    try:
        await container.start()
        result = await container.wait(timeout=DEADLINE_S)
        lines = await container.log(stdout=True, stderr=True)
        return int(result["StatusCode"]), "".join(lines)
    finally:
        await container.delete(force=True)


async def test_container_sees_its_environment(docker: Any, busybox_image: str) -> None:
    greeting = f"hello-{uuid.uuid4().hex}"
    code, output = await run(
        docker, busybox_image, ["sh", "-c", 'echo "$GREETING"'], env={"GREETING": greeting}
    )
    assert (code, output.strip()) == (0, greeting)


async def test_exit_code_and_stderr_come_back(docker: Any, busybox_image: str) -> None:
    code, output = await run(docker, busybox_image, ["sh", "-c", "echo oops >&2; exit 3"])
    assert (code, output.strip()) == (3, "oops")


async def test_network_none_has_only_loopback(docker: Any, busybox_image: str) -> None:
    list_interfaces = ["ls", "/sys/class/net"]
    code, output = await run(docker, busybox_image, list_interfaces)
    assert code == 0
    assert set(output.split()) > {"lo"}, "the default bridge network should add an interface"

    code, output = await run(
        docker, busybox_image, list_interfaces, host_config={"NetworkMode": "none"}
    )
    assert (code, output.split()) == (0, ["lo"])


async def test_bind_mount_is_shared_with_the_host(
    docker: Any, busybox_image: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    code, output = await run(
        docker,
        busybox_image,
        ["sh", "-c", f"echo {token} > /out/result.txt"],
        host_config={"Binds": [f"{tmp_path}:/out"]},
    )
    assert code == 0, output
    assert (tmp_path / "result.txt").read_text().strip() == token


async def test_second_image_reference(docker: Any, busybox_image: str) -> None:
    """`scripts/docker-engine image` also tags the test image as <repo>:2."""
    repo, _, _ = busybox_image.rpartition(":")
    second = f"{repo}:2"
    assert second != busybox_image
    code, output = await run(docker, second, ["echo", "two"])
    assert (code, output.strip()) == (0, "two")


async def test_deleted_container_is_gone(docker: Any, busybox_image: str) -> None:
    config = {
        "Image": busybox_image,
        "Cmd": ["true"],
        "Labels": {RUN_LABEL: RUN_ID, "org.postee.test-case": "deleted"},
    }
    only_this = {"label": [f"{RUN_LABEL}={RUN_ID}", "org.postee.test-case=deleted"]}
    container = await docker.containers.create(config=config)
    listed = await docker.containers.list(all=True, filters=only_this)
    assert [c.id for c in listed] == [container.id]

    await container.start()
    await container.wait(timeout=DEADLINE_S)
    await container.delete(force=True)

    assert await docker.containers.list(all=True, filters=only_this) == []
    with pytest.raises(aiodocker.DockerError) as missing:
        await docker.containers.get(container.id)
    assert missing.value.status == 404
