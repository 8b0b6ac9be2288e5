"""The docker action on the real engine, with the local busybox test image."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from actions.base import ActionPermanentError, ActionRequest, ActionTemporaryError
from actions.docker import LABEL, DockerAction

EVENT = {"ArtifactName": "registry.example/app:1.2", "Results": [{"Target": "app", "n": 3}]}


@pytest.fixture
async def action(engine_host, monkeypatch) -> AsyncIterator[DockerAction]:
    monkeypatch.setenv("DOCKER_HOST", engine_host)
    label = f"test-{uuid.uuid4().hex[:8]}"  # a worker of its own: leftovers checks stay ours
    async with DockerAction(worker_label=label) as instance:
        yield instance
        async with aiodocker.Docker(url=engine_host) as client:
            left = await client.containers.list(all=True, filters={"label": [f"{LABEL}={label}"]})
        assert left == [], "a container outlived its command"


def request(params: dict, event: dict = EVENT, **extra) -> ActionRequest:
    return ActionRequest(
        command_id=uuid.uuid4().hex,
        event_id="e1",
        action="scan it",
        params=params,
        event=event,
        event_text=json.dumps(event),
        timeout_s=extra.pop("timeout_s", 30.0),
        **extra,
    )


async def test_event_and_env_reach_the_container(action, test_image):
    params = {
        "docker-image-name": test_image,
        "docker-env": ["TEAM=secops"],
        "docker-cmd": ["sh", "-c", 'echo "$TEAM|$POSTEE_EVENT"; cat "$POSTEE_EVENT_FILE"'],
    }
    result = await action.execute(request(params))
    assert result.status == "succeeded", result
    first, second = result.detail["stdout"].splitlines()
    assert first == f"secops|{json.dumps(EVENT)}"  # no stray quotes around the value
    assert second == json.dumps(EVENT)
    assert result.detail["exit_code"] == 0 and result.detail["image"] == test_image
    assert result.detail["container_name"].startswith("postee-scan-it-")


async def test_cmd_tokens_are_replaced_by_event_values(action, test_image):
    params = {
        "docker-image-name": test_image,
        "docker-cmd": ["echo", "event.input.ArtifactName", "n=event.input.Results.0.n"],
    }
    result = await action.execute(request(params))
    assert result.detail["stdout"] == "registry.example/app:1.2 n=3\n"


async def test_metacharacters_are_data_not_commands(action, test_image, tmp_path: Path):
    canary = tmp_path / "pwned"
    event = {"name": "$(touch /out/pwned); `touch /out/pwned`; ' \" ; touch /out/pwned"}
    params = {
        "docker-image-name": test_image,
        "docker-volume-mounts": {str(tmp_path): "/out"},
        "docker-cmd": ["echo", "event.input.name"],
    }
    result = await action.execute(request(params, event=event))
    assert result.status == "succeeded" and result.detail["stdout"] == event["name"] + "\n"
    assert not canary.exists()


async def test_network_none_has_only_loopback(action, test_image):
    params = {
        "docker-image-name": test_image,
        "docker-network": "none",
        "docker-cmd": ["ls", "/sys/class/net"],
    }
    result = await action.execute(request(params))
    assert result.detail["stdout"].split() == ["lo"]


async def test_volume_mount_lets_the_container_write_for_the_host(
    action, test_image, tmp_path: Path
):
    params = {
        "docker-image-name": test_image,
        "docker-volume-mounts": {str(tmp_path): "/out"},
        "docker-cmd": ["sh", "-c", "cp /postee/event.json /out/copy.json"],
    }
    result = await action.execute(request(params))
    assert result.status == "succeeded"
    assert json.loads((tmp_path / "copy.json").read_text()) == EVENT


async def test_non_zero_exit_is_failed_with_code(action, test_image):
    params = {"docker-image-name": test_image, "docker-cmd": ["sh", "-c", "echo oops >&2; exit 5"]}
    result = await action.execute(request(params))
    assert result.status == "failed" and result.detail["exit_code"] == 5
    assert result.detail["stderr"] == "oops\n" and "code 5" in result.error


async def test_timeout_kills_and_removes_the_container(action, test_image):
    params = {"docker-image-name": test_image, "docker-cmd": ["sleep", "60"]}
    result = await action.execute(request(params, timeout_s=1.0))
    assert result.status == "failed" and result.detail["timed_out"] is True
    assert "timed out after 1s" in result.error  # and the fixture finds no container left


async def test_hardening_options(action, test_image):
    params = {
        "docker-image-name": test_image,
        "docker-user": "nobody",
        "docker-read-only": True,
        "docker-memory": "64m",
        "docker-cpus": 0.5,
        "docker-cmd": [
            "sh",
            "-c",
            "id -u; touch /x 2>/dev/null || echo read-only; "
            "grep NoNewPrivs /proc/self/status; cat /postee/event.json",
        ],
    }
    result = await action.execute(request(params))
    lines = result.detail["stdout"].splitlines()
    assert lines[0] == "65534" and lines[1] == "read-only"
    assert lines[2].split() == ["NoNewPrivs:", "1"]
    assert lines[3] == json.dumps(EVENT)  # the event file is readable by an unprivileged user


async def test_missing_image_with_pull_never_is_permanent(action):
    params = {"docker-image-name": "postee-test/absent:0", "docker-pull": "never"}
    with pytest.raises(ActionPermanentError, match="not present"):
        await action.execute(request(params))


async def test_unreachable_engine_is_temporary(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    async with DockerAction() as offline:
        with pytest.raises(ActionTemporaryError, match="unreachable"):
            await offline.execute(request({"docker-image-name": "x:1"}))


async def test_ten_in_parallel_all_finish(action, test_image):
    params = {
        "docker-image-name": test_image,
        "docker-cmd": ["sh", "-c", "echo $POSTEE_COMMAND_ID"],
    }
    requests = [request(params) for _ in range(10)]
    results = await asyncio.gather(*(action.execute(r) for r in requests))
    assert [r.status for r in results] == ["succeeded"] * 10
    assert [r.detail["stdout"].strip() for r in results] == [r.command_id for r in requests]


async def test_leftovers_of_a_dead_worker_are_removed(engine_host, test_image, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", engine_host)
    label = f"test-{uuid.uuid4().hex[:8]}"
    async with aiodocker.Docker(url=engine_host) as client:
        stale = await client.containers.create(
            {"Image": test_image, "Cmd": ["true"], "Labels": {LABEL: label}}, name=f"stale-{label}"
        )
        async with DockerAction(worker_label=label):  # entering cleans up
            pass
        left = await client.containers.list(all=True, filters={"label": [f"{LABEL}={label}"]})
        assert left == []
        with pytest.raises(aiodocker.DockerError):
            await stale.show()


async def test_dry_run_runs_nothing(action, test_image):
    params = {"docker-image-name": test_image, "docker-cmd": ["echo", "event.input.ArtifactName"]}
    result = await action.execute(request(params, dry_run=True))
    assert result.status == "dry_run" and result.detail["cmd"] == [
        "echo",
        "registry.example/app:1.2",
    ]
