"""stdout: print the rendered description on the worker's standard output (upstream has
no keys). A dry run says how many bytes it would print."""

from __future__ import annotations

import sys

from actions.base import Action, ActionRequest, ActionResult

__all__ = ["StdoutAction"]


class StdoutAction(Action):
    type = "stdout"
    timeout_s = 10.0
    max_attempts = 1

    async def execute(self, request: ActionRequest) -> ActionResult:
        text = request.event_text
        size = len(text.encode("utf-8"))
        if request.dry_run:
            return ActionResult("dry_run", {"would_print_bytes": size})
        try:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
        except OSError as exc:
            return ActionResult("failed", {"bytes": size}, f"cannot write to stdout: {exc}")
        return ActionResult("succeeded", {"bytes": size})
