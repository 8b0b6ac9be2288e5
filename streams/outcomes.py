"""Publishing our records, and waiting for the broker's acknowledgement.

Agents await every send's ack before they move on to the next record, and Faust commits a
record's offset only after the agent moved on: so nothing a record caused is lost if the
worker dies (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

import faust

from streams import records
from streams.plugins import PluginRequest
from streams.records import Command, DlqRecord, Outcome, Routed
from streams.topics import Topics

__all__ = ["Message", "Publisher", "ack_after", "manual_acks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    topic: faust.TopicT
    key: str | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] | None = None


class Publisher:
    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    def command(self, command: Command) -> Message:
        """To the runner of the action's `runs-on`, else to the workers of its type."""
        if command.runs_on:
            topic = self.topics.runner(command.runs_on)
        else:
            topic = self.topics.actions[command.type]
        return Message(topic, command.event_id, command.to_json())

    def plugin_request(self, request: PluginRequest) -> Message:
        return Message(self.topics.plugins, request.key, request.to_json())

    def routed(self, routed: Routed) -> Message:
        return Message(self.topics.outcomes, routed.event_id, routed.to_json())

    def outcome(self, outcome: Outcome) -> Message:
        return Message(self.topics.outcomes, outcome.event_id, outcome.to_json())

    def dlq(self, record: DlqRecord) -> Message:
        return Message(self.topics.dlq, record.event_id, record.to_json())

    async def send(self, *messages: Message) -> None:
        """Send in order, then wait until the broker acknowledged every one."""
        await asyncio.gather(*await self.enqueue(*messages))

    async def enqueue(self, *messages: Message) -> list[Awaitable[Any]]:
        """Hand the messages to the producer in order; the acknowledgements to await."""
        await self.topics.declare_runners(m.topic for m in messages)
        return [
            await m.topic.send(
                key=m.key.encode("utf-8") if m.key is not None else None,
                value=m.value,
                headers=list(m.headers) if m.headers else None,
            )
            for m in messages
        ]

    def dlq_for(
        self,
        raw: bytes | None,
        *,
        stage: str,
        reason: str,
        event: faust.EventT[bytes] | None = None,
        event_id: str | None = None,
        error: str | None = None,
        attempts: list[dict[str, Any]] | None = None,
    ) -> Message:
        """The DLQ record of a record we could not process, located by its event."""
        where: dict[str, object] = {
            "event_id": event_id,
            "error": error,
            "attempts": attempts or [],
        }
        if event is not None:
            where |= {
                "topic": event.message.topic,
                "partition": event.message.partition,
                "offset": event.message.offset,
            }
        return self.dlq(records.DlqRecord.for_bytes(raw, stage=stage, reason=reason, **where))


async def ack_after(
    stream: faust.StreamT[bytes], event: faust.EventT[bytes], sent: list[Awaitable[Any]]
) -> None:
    """Acknowledge a consumed record once everything it produced is on the broker.

    Agents read with `stream.noack()`: Faust would otherwise acknowledge a record when
    the agent's loop moves on, and also when an agent is cancelled mid-record at shutdown
    (its iterator acknowledges in a `finally`), which would commit a record whose output
    was never written. A record that is never acknowledged here comes back after a
    restart."""
    try:
        await asyncio.gather(*sent)
    except Exception:
        log.exception("output of %s was not acknowledged; it will be redelivered", event.message.tp)
        return
    await stream.ack(event)


def manual_acks(stream: faust.StreamT[bytes]) -> faust.StreamT[bytes]:
    """The agent's stream with automatic acknowledgement off (see `ack_after`)."""
    # noack is on faust.Stream but missing from the StreamT protocol.
    return stream.noack()  # type: ignore[attr-defined, no-any-return]
