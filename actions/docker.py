"""docker: run a container image as an action (Postee's docker action, made safe).

Keys as upstream: `docker-image-name`, `docker-cmd` (list; `event.input.<path>` tokens are
replaced by event values), `docker-env` (`K=V` list), `docker-network`,
`docker-volume-mounts` (host path → container path). Beyond upstream: `docker-pull`
(`missing`, `always`, `never`), `timeout` (default 300 s, then the container is killed),
`docker-memory`, `docker-cpus`, `docker-user`, `docker-read-only`, and
`docker-no-new-privileges` (on unless set false).

The event reaches the container as data only: `POSTEE_EVENT` in its environment (no stray
quotes; left out above Linux's 128 KiB limit) and the same text read-only at
`/postee/event.json` (`POSTEE_EVENT_FILE`). Containers are named
`postee-<action>-<short command id>`, labelled, and removed after every run, whatever
happened; at start, leftovers of dead workers (exited, or past their deadline) are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError

from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    ActionTemporaryError,
    exit_result,
    truncate,
)
from actions.substitution import substitute

__all__ = ["DockerAction"]

LABEL = "io.postee-streams.worker"
LABEL_DEADLINE = "io.postee-streams.deadline"
LABEL_COMMAND = "io.postee-streams.command-id"
EVENT_PATH = "/postee/event.json"
MAX_ENV_STRING_BYTES = 128 * 1024
#: Log bytes the engine keeps per container, so a chatty image cannot fill the disk.
LOG_MAX_SIZE = "4m"
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class DockerAction(Action):
    type = "docker"
    timeout_s = 300.0
    max_attempts = 4
    concurrency = 2  # a container each, on the worker's machine

    def __init__(self, *, worker_label: str = "postee", max_output_bytes: int = 16 * 1024) -> None:
        self.worker_label = worker_label
        self.max_output_bytes = max_output_bytes
        self._docker: aiodocker.Docker | None = None

    async def __aenter__(self) -> DockerAction:
        # An engine that is down now may be up later: commands retry, start does not fail.
        with contextlib.suppress(DockerError, aiohttp.ClientError, OSError):
            await self.remove_leftovers()
        return self

    def _engine(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker()  # honours DOCKER_HOST
        return self._docker

    async def aclose(self) -> None:
        if self._docker is not None:
            await self._docker.close()
            self._docker = None

    async def remove_leftovers(self) -> int:
        """Remove our containers that a dead worker left: exited ones, or running past
        their deadline (a live sibling worker's running containers are left alone)."""
        found = await self._engine().containers.list(
            all=True, filters={"label": [f"{LABEL}={self.worker_label}"]}
        )
        removed = 0
        for container in found:
            labels = container._container.get("Labels") or {}
            deadline = float(labels.get(LABEL_DEADLINE, 0))
            if container._container.get("State") != "running" or deadline < time.time():
                await container.delete(force=True)
                removed += 1
        return removed

    async def execute(self, request: ActionRequest) -> ActionResult:
        spec = _Spec(request, self.worker_label)
        if request.dry_run:
            return ActionResult("dry_run", spec.summary())
        try:
            pulled = await self._ensure_image(
                spec.image, str(request.params.get("docker-pull") or "missing")
            )
            return await self._run(spec, request, pulled)
        except DockerError as exc:
            raise _translate(exc, spec.summary()) from None
        except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
            raise ActionTemporaryError(
                f"Docker engine unreachable: {exc}", detail=spec.summary()
            ) from None

    async def _ensure_image(self, image: str, policy: str) -> bool:
        images = self._engine().images
        if policy == "always":
            await images.pull(image)
            return True
        try:
            await images.inspect(image)
            return False
        except DockerError as exc:
            if exc.status != 404:
                raise
        if policy == "never":
            raise ActionPermanentError(f"image {image} is not present and docker-pull is 'never'")
        await images.pull(image)
        return True

    async def _run(self, spec: _Spec, request: ActionRequest, pulled: bool) -> ActionResult:
        folder = tempfile.mkdtemp(prefix="postee-docker-")  # 0700: only we reach the file
        event_file = Path(folder) / "event.json"
        event_file.write_text(request.event_text, encoding="utf-8")
        event_file.chmod(0o644)  # readable by any user inside the container
        config = spec.config(str(event_file), request.timeout_s)
        container = None
        try:
            container = await self._engine().containers.create(config, name=spec.name)
            await container.start()
            timed_out = False
            try:
                status = await asyncio.wait_for(container.wait(), request.timeout_s)
            except TimeoutError:
                timed_out = True
                with contextlib.suppress(DockerError):
                    await container.kill()
                status = await container.wait()
            stdout = "".join(await container.log(stdout=True)).encode()
            stderr = "".join(await container.log(stderr=True)).encode()
            return self._result(
                spec, container.id, status, stdout, stderr, timed_out, pulled, request
            )
        finally:
            if container is not None:
                # Shielded: the container goes even when the command is cancelled.
                await asyncio.shield(_delete(container))
            shutil.rmtree(folder, ignore_errors=True)

    def _result(
        self,
        spec: _Spec,
        container_id: str,
        status: Mapping[str, Any],
        stdout: bytes,
        stderr: bytes,
        timed_out: bool,
        pulled: bool,
        request: ActionRequest,
    ) -> ActionResult:
        out, out_cut = truncate(stdout, self.max_output_bytes)
        err, err_cut = truncate(stderr, self.max_output_bytes)
        exit_code = status.get("StatusCode")
        detail = {
            **spec.summary(),
            "container_id": container_id,
            "exit_code": exit_code,
            "stdout": out,
            "stderr": err,
            "stdout_truncated": out_cut,
            "stderr_truncated": err_cut,
            "timed_out": timed_out,
            "pulled": pulled,
        }
        note = f"timed out after {request.timeout_s:g}s; container killed" if timed_out else None
        return exit_result(detail, exit_code, note, "container")


async def _delete(container: Any) -> None:
    with contextlib.suppress(DockerError, aiohttp.ClientError):
        await container.delete(force=True)


class _Spec:
    """The container to run, resolved from the action's keys and the event."""

    def __init__(self, request: ActionRequest, worker_label: str) -> None:
        params, event = request.params, request.event
        self.image = str(params.get("docker-image-name") or "")
        if not self.image:
            raise ActionPermanentError("docker action needs 'docker-image-name'")
        self.cmd = [substitute(str(part), event).text for part in params.get("docker-cmd") or []]
        self.env = [str(item) for item in params.get("docker-env") or []]
        self.network = params.get("docker-network")
        self.mounts = {
            str(k): str(v) for k, v in (params.get("docker-volume-mounts") or {}).items()
        }
        self.name = (
            f"postee-{_safe_name(request.action)}-{request.command_id[:12]}-{request.attempt}"
        )
        self.params, self.request, self.worker_label = params, request, worker_label

    def summary(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "cmd": self.cmd,
            "container_name": self.name,
            "network": self.network,
            "mounts": self.mounts,
            "env_keys": sorted(e.partition("=")[0] for e in self.env),
        }

    def config(self, event_file: str, timeout_s: float) -> dict[str, Any]:
        env = [
            *self.env,
            f"POSTEE_EVENT_FILE={EVENT_PATH}",
            f"POSTEE_COMMAND_ID={self.request.command_id}",
            f"POSTEE_EVENT_ID={self.request.event_id}",
        ]
        event_env = f"POSTEE_EVENT={self.request.event_text}"
        if len(event_env.encode()) < MAX_ENV_STRING_BYTES:
            env.append(event_env)
        host: dict[str, Any] = {
            "Binds": [f"{src}:{dst}" for src, dst in self.mounts.items()]
            + [f"{event_file}:{EVENT_PATH}:ro"],
            "ReadonlyRootfs": bool(self.params.get("docker-read-only", False)),
            "LogConfig": {"Type": "json-file", "Config": {"max-size": LOG_MAX_SIZE}},
        }
        if self.params.get("docker-no-new-privileges", True):
            host["SecurityOpt"] = ["no-new-privileges"]
        if self.network:
            host["NetworkMode"] = str(self.network)
        if self.params.get("docker-memory"):
            host["Memory"] = _bytes(str(self.params["docker-memory"]))
        if self.params.get("docker-cpus"):
            host["NanoCpus"] = int(float(self.params["docker-cpus"]) * 1e9)
        config: dict[str, Any] = {
            "Image": self.image,
            "Env": env,
            "Labels": {
                LABEL: self.worker_label,
                LABEL_COMMAND: self.request.command_id,
                LABEL_DEADLINE: str(int(time.time() + timeout_s + 60)),
            },
            "HostConfig": host,
        }
        if self.cmd:
            config["Cmd"] = self.cmd
        if self.params.get("docker-user"):
            config["User"] = str(self.params["docker-user"])
        return config


def _safe_name(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]+", "-", name).strip("-.")[:40] or "action"


def _bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([bkmg]?)b?\s*", text.lower())
    if not match:
        raise ActionPermanentError(f"docker-memory: not a size: {text!r}")
    return int(match.group(1)) * _UNITS[match.group(2)]


def _translate(exc: DockerError, detail: dict[str, Any]) -> Exception:
    message = f"Docker engine: {exc.status} {exc.message}"
    if exc.status in (409, 429) or exc.status >= 500:
        return ActionTemporaryError(message, detail=detail)
    return ActionPermanentError(message, detail=detail)
