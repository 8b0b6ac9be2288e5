"""exec: run a shell script with the event in its environment (Postee's exec action).

The event never reaches a command line: the script is fed to `/bin/sh` on stdin
(`exec-script`) or run from its file (`input-file`), and the event travels in the
environment (`POSTEE_EVENT`) and in a private file (`POSTEE_EVENT_FILE`). Linux refuses a
single environment string over 128 KiB, so a larger event is passed by file only.

The script runs in its own process group with a minimal environment (no worker secrets
leak into it); on timeout or cancellation the whole group is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actions.base import (
    Action,
    ActionPermanentError,
    ActionRequest,
    ActionResult,
    exit_result,
    truncate,
)

__all__ = ["ExecAction"]

#: Linux's MAX_ARG_STRLEN: the longest single "NAME=value" string execve accepts.
MAX_ENV_STRING_BYTES = 128 * 1024
#: Variables of the worker's environment a script may see; everything else stays out.
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER")
READ_CHUNK_BYTES = 64 * 1024
#: After a kill, how long we wait for the pipes to close (a setsid'd grandchild may hold them).
DRAIN_AFTER_KILL_S = 2.0


@dataclass(frozen=True)
class _Capture:
    data: bytes
    total_bytes: int


class ExecAction(Action):
    type = "exec"
    timeout_s = 60.0
    max_attempts = 1  # a script is not retried: a non-zero exit is a result
    # A process each. Scripts mostly wait (on fork and exec, on the tools they call), so
    # more than the cores: bench/post_to_delivery.py's exec case (`true`), interleaved,
    # 269 and 296 commands/s with 4, 369 and 361 with 8, 365 and 359 with 16.
    concurrency = 8

    def __init__(self, *, timeout_s: float = 60.0, max_output_bytes: int = 16 * 1024) -> None:
        self.timeout_s = timeout_s
        self.max_output_bytes = max_output_bytes

    async def execute(self, request: ActionRequest) -> ActionResult:
        argv, script = _command_line(request.params)
        timeout_s = request.timeout_s
        if request.dry_run:
            return ActionResult(
                status="dry_run",
                detail={
                    "argv": argv,
                    "script": script,
                    "input_file": request.params.get("input-file"),
                    "env_keys": sorted(_user_env(request.params)),
                    "timeout_s": timeout_s,
                },
            )
        fd, event_file = tempfile.mkstemp(prefix="postee-event-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(request.event_text)
            env = _environment(request, event_file)
            return await self._run(argv, script, env, timeout_s)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(event_file)

    async def _run(
        self, argv: list[str], script: str | None, env: dict[str, str], timeout_s: float
    ) -> ActionResult:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if script is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group, so a kill reaches its children
        )
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.ensure_future(self._read_bounded(process.stdout)),
            asyncio.ensure_future(self._read_bounded(process.stderr)),
        ]
        timed_out = False
        try:
            await asyncio.wait_for(self._feed_and_wait(process, script), timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                await process.wait()
        stdout, stderr = await _drain(readers)
        return _result(
            process.returncode, stdout, stderr, timed_out, timeout_s, self.max_output_bytes
        )

    @staticmethod
    async def _feed_and_wait(process: asyncio.subprocess.Process, script: str | None) -> None:
        if script is not None and process.stdin is not None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(script.encode("utf-8"))
                await process.stdin.drain()
            process.stdin.close()
        await process.wait()

    async def _read_bounded(self, stream: asyncio.StreamReader) -> _Capture:
        # Keep reading past the limit so the script never blocks on a full pipe.
        kept = bytearray()
        total = 0
        while chunk := await stream.read(READ_CHUNK_BYTES):
            total += len(chunk)
            room = self.max_output_bytes + 1 - len(kept)
            if room > 0:
                kept += chunk[:room]
        return _Capture(bytes(kept), total)


def _command_line(params: Mapping[str, Any]) -> tuple[list[str], str | None]:
    if params.get("exec-script"):
        return ["/bin/sh", "-s"], str(params["exec-script"])
    script_path = params.get("input-file")
    if not script_path:
        raise ActionPermanentError("exec action needs 'exec-script' or 'input-file'")
    if not Path(script_path).is_file():
        raise ActionPermanentError(f"input-file not found: {script_path}")
    return ["/bin/sh", str(script_path)], None


def _user_env(params: Mapping[str, Any]) -> dict[str, str]:
    pairs = (str(item).partition("=") for item in params.get("env") or [])
    return {name: value for name, _, value in pairs if name}


def _environment(request: ActionRequest, event_file: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(_user_env(request.params))
    env["POSTEE_EVENT_FILE"] = event_file
    env["POSTEE_COMMAND_ID"] = request.command_id
    env["POSTEE_EVENT_ID"] = request.event_id
    if len(b"POSTEE_EVENT=") + len(request.event_text.encode("utf-8")) < MAX_ENV_STRING_BYTES:
        env["POSTEE_EVENT"] = request.event_text
    return env


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def _drain(readers: Sequence[asyncio.Future[_Capture]]) -> tuple[_Capture, _Capture]:
    done, pending = await asyncio.wait(readers, timeout=DRAIN_AFTER_KILL_S)
    for reader in pending:
        reader.cancel()
    empty = _Capture(b"", 0)
    out, err = (r.result() if r in done and not r.cancelled() else empty for r in readers)
    return out, err


def _result(
    exit_code: int | None,
    stdout: _Capture,
    stderr: _Capture,
    timed_out: bool,
    timeout_s: float,
    limit: int,
) -> ActionResult:
    out_text, out_cut = truncate(stdout.data, limit)
    err_text, err_cut = truncate(stderr.data, limit)
    detail = {
        "exit_code": exit_code,
        "stdout": out_text,
        "stderr": err_text,
        "stdout_truncated": out_cut or stdout.total_bytes > len(stdout.data),
        "stderr_truncated": err_cut or stderr.total_bytes > len(stderr.data),
        "timed_out": timed_out,
    }
    note = f"timed out after {timeout_s:g}s; process group killed" if timed_out else None
    return exit_result(detail, exit_code, note, "script")
