"""The exec action on its own: real /bin/sh processes, no Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from actions.base import ActionPermanentError, ActionRequest
from actions.exec import ExecAction


def request(params: dict, event: dict | None = None, **extra) -> ActionRequest:
    event = event if event is not None else {"id": 1}
    return ActionRequest(
        command_id="c" * 32,
        event_id="e1",
        action="a",
        params=params,
        event=event,
        event_text=json.dumps(event),
        **extra,
    )


async def test_script_sees_event_and_env():
    action = ExecAction()
    result = await action.execute(
        request(
            {
                "exec-script": 'echo "$GREETING $POSTEE_EVENT $POSTEE_COMMAND_ID"',
                "env": ["GREETING=hello"],
            }
        )
    )
    assert result.status == "succeeded"
    assert result.detail["stdout"] == f'hello {{"id": 1}} {"c" * 32}\n'


async def test_input_file_runs_with_sh(tmp_path: Path):
    script = tmp_path / "s.sh"
    script.write_text('cat "$POSTEE_EVENT_FILE"\n')
    result = await ExecAction().execute(request({"input-file": str(script)}))
    assert result.status == "succeeded" and result.detail["stdout"] == '{"id": 1}'


async def test_missing_input_file_is_permanent():
    with pytest.raises(ActionPermanentError, match="not found"):
        await ExecAction().execute(request({"input-file": "/nonexistent/script.sh"}))


async def test_worker_secrets_do_not_reach_the_script(monkeypatch):
    monkeypatch.setenv("POSTEE_HMAC_SECRET", "do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nor-this")
    result = await ExecAction().execute(request({"exec-script": "env"}))
    assert (
        "do-not-leak" not in result.detail["stdout"] and "nor-this" not in result.detail["stdout"]
    )
    assert "PATH=" in result.detail["stdout"]


async def test_output_is_bounded_and_marked_truncated():
    action = ExecAction(max_output_bytes=100)
    result = await action.execute(
        request({"exec-script": "head -c 1000000 /dev/zero | tr '\\0' x; echo err >&2"})
    )
    assert result.status == "succeeded"
    assert len(result.detail["stdout"]) == 100 and result.detail["stdout_truncated"] is True
    assert result.detail["stderr"] == "err\n" and result.detail["stderr_truncated"] is False


async def test_timeout_kills_the_whole_process_group(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    script = f"sleep 60 & echo $! > {pid_file}; wait"
    result = await ExecAction().execute(request({"exec-script": script}, timeout_s=0.5))
    assert result.status == "failed" and result.detail["timed_out"]
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # SIGKILL delivery is asynchronous; poll with a deadline
    assert not alive(child)  # the background child died with its group


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaped (PID 1 here may not reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "Z" not in state.split()[1]


async def test_file_is_removed_afterwards():
    result = await ExecAction().execute(request({"exec-script": 'echo "$POSTEE_EVENT_FILE"'}))
    path = Path(result.detail["stdout"].strip())
    assert path.name.startswith("postee-event-") and not path.exists()


async def test_event_file_is_private():
    result = await ExecAction().execute(request({"exec-script": 'stat -c %a "$POSTEE_EVENT_FILE"'}))
    assert result.detail["stdout"].strip() == "600"


async def test_dry_run_runs_nothing(tmp_path: Path):
    marker = tmp_path / "ran"
    result = await ExecAction().execute(request({"exec-script": f"touch {marker}"}, dry_run=True))
    assert result.status == "dry_run" and not marker.exists()
    assert result.detail["script"] == f"touch {marker}"
