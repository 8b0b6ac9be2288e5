"""slack: a message through a Slack incoming webhook (upstream key: `url`).

The template's result becomes Block Kit blocks: Slack blocks from a Slack template
(`postee.vuls.slack`, `postee.trivyoperator.slack`) are sent as they are; Markdown-ish
text becomes mrkdwn sections of at most 3,000 characters; HTML (a common mistake, which
`postee validate` warns about) is turned into text first. The title is a header block.
Slack takes at most 50 blocks a message, so longer reports go as several messages of a
header and up to 49 blocks each (at most `MAX_MESSAGES`). Slack answers `ok`; 429 comes
with `Retry-After`, honoured by the retry. A retry resends only the parts Slack has not
accepted yet (remembered by command id in this worker).

The webhook URL is the credential: outcomes show only its host and first path segment.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from actions.base import ActionRequest, ActionResult
from actions.notify import shape
from actions.notify.transport import HttpNotifier, masked_url

__all__ = ["SlackAction"]

MAX_BLOCKS = 50
SECTION_CHARS = 3000
HEADER_CHARS = 150
FALLBACK_CHARS = 3000
MAX_MESSAGES = 10
#: Commands whose first parts were accepted, remembered for their retries.
REMEMBERED_COMMANDS = 1024


class SlackAction(HttpNotifier):
    type = "slack"
    fits = frozenset({"blocks", "text"})

    def __init__(self, *, max_response_bytes: int = 16 * 1024) -> None:
        super().__init__(max_response_bytes=max_response_bytes)
        self._accepted: OrderedDict[str, int] = OrderedDict()

    def describe(self, request: ActionRequest) -> dict[str, Any]:
        messages, notes = messages_for(request)
        return {
            "url": masked_url(str(request.params.get("url", ""))),
            "messages": len(messages),
            "blocks": [len(m["blocks"]) for m in messages],
            "first_message": messages[0] if messages else None,
            **({"notes": notes} if notes else {}),
        }

    async def deliver(self, request: ActionRequest) -> ActionResult:
        url = str(request.params.get("url", ""))
        messages, notes = messages_for(request)
        done = self._accepted.get(request.command_id, 0)
        detail: dict[str, Any] = {"url": masked_url(url), "messages": len(messages)}
        if notes:
            detail["notes"] = notes
        result = ActionResult("succeeded", detail)
        for index in range(done, len(messages)):
            reply = await self.call(
                request, "POST", url, json_body=messages[index], shown_url=masked_url(url)
            )
            detail = {**detail, "part": index + 1}
            result = self.result(reply, f"Slack message {index + 1}/{len(messages)}", detail)
            if result.status != "succeeded":
                return result
            self._remember(request.command_id, index + 1)
        self._accepted.pop(request.command_id, None)
        return result

    def _remember(self, command_id: str, parts: int) -> None:
        self._accepted[command_id] = parts
        self._accepted.move_to_end(command_id)
        while len(self._accepted) > REMEMBERED_COMMANDS:
            self._accepted.popitem(last=False)


def messages_for(request: ActionRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """The Slack messages of one command, and notes on what was converted or cut."""
    template = request.template or {}
    title = str(template.get("title") or "Postee")
    description = request.event_text
    notes: list[str] = []
    blocks = shape.parse_blocks(description)
    if blocks is None:
        kind = shape.detect(description)
        if kind not in SlackAction.fits:
            notes.append(f"the template gives {kind}, not Slack blocks: sent as text")
        text = shape.md_to_mrkdwn(shape.to_text(description))
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": piece}}
            for piece in shape.chunks(text, SECTION_CHARS)
        ]
    if template.get("url"):
        link = str(template["url"])
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|More details>"}}
        )
    header = {"type": "header", "text": {"type": "plain_text", "text": _cut(title, HEADER_CHARS)}}
    per_message = MAX_BLOCKS - 1
    groups = [blocks[i : i + per_message] for i in range(0, len(blocks), per_message)] or [[]]
    if len(groups) > MAX_MESSAGES:
        notes.append(f"{len(groups)} messages needed; only the first {MAX_MESSAGES} are sent")
        groups = groups[:MAX_MESSAGES]
    fallback = _cut(title, FALLBACK_CHARS)
    return [{"text": fallback, "blocks": [header, *group]} for group in groups], notes


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
