"""Publishing our records, and waiting for the broker's acknowledgement.

Agents await every send's ack before they move on to the next record, and Faust commits a
record's offset only after the agent moved on: so nothing a record caused is lost if the
worker dies (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import faust
from aiokafka.errors import KafkaError

from streams import metrics, ratelimit, records, tracing
from streams.config import Action
from streams.plugins import PluginRequest
from streams.records import Command, DlqRecord, Outcome, Routed
from streams.silences import Silenced
from streams.topics import Topics

__all__ = ["Message", "Publisher", "ack_after", "manual_acks"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    topic: faust.TopicT
    key: str | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] | None = None
    #: What to send instead when the record is over the size limit (default: a DLQ record).
    instead: Callable[[str], list[Message]] | None = None


class Publisher:
    """Builds our records into messages and sends them. Each message carries the current
    trace context in its headers when traces are on (tracing.py), so it is taken where
    the message is built, inside the span that decided it. Every message is checked against
    the record limit before it reaches the producer: a record the producer or broker
    would refuse must never stop a partition (the agent would crash on it, and again on
    every redelivery). Commands first shed their inline event (it stays on its own
    topic, by reference); whatever still does not fit becomes a DLQ record."""

    def __init__(
        self,
        topics: Topics,
        max_record_bytes: int,
        counts: metrics.Metrics | None = None,
        limited: Mapping[str, Action] | None = None,
    ) -> None:
        self.topics = topics
        self.max_record_bytes = max_record_bytes
        self.metrics = counts or metrics.Metrics()
        #: Actions with a `rate-limit`: their commands go to the plugin agent first.
        self.limited = dict(limited or {})

    def command(self, command: Command, *, limit: bool = True) -> Message:
        """To the runner of the action's `runs-on`, else to the workers of its type; for
        an action with a rate limit (unless `limit=False`: the limit agreed already, or a
        summary), to the plugin agent that counts it (ratelimit.py)."""
        action = self.limited.get(command.action) if limit else None
        if action is not None:
            now_ms = time.time_ns() // 1_000_000
            return self.plugin_request(ratelimit.action_request(action, command, now_ms))
        if command.runs_on:
            topic = self.topics.runner(command.runs_on)
        else:
            topic = self.topics.actions[command.type]
        value = command.to_json()
        too_large = len(value) > self.max_record_bytes
        if too_large and command.event is not None and command.event_ref is not None:
            value = replace(command, event=None).to_json()
        if len(value) <= self.max_record_bytes:  # else `_within_limit` issues `instead`
            self.metrics.command(command.type)
        return Message(
            topic,
            command.event_id,
            value,
            tracing.inject(),
            instead=lambda reason: self._unsendable_command(command, reason),
        )

    def plugin_request(self, request: PluginRequest) -> Message:
        value = request.to_json()
        if len(value) > self.max_record_bytes:
            by_ref = [replace(c, event=None) if c.event_ref else c for c in request.commands]
            value = replace(request, commands=by_ref).to_json()
        return Message(
            self.topics.plugins,
            request.key,
            value,
            tracing.inject(),
            instead=lambda reason: [
                m for c in request.commands for m in self._unsendable_command(c, reason)
            ],
        )

    def routed(self, routed: Routed) -> Message:
        self.metrics.routed(routed)
        return Message(self.topics.outcomes, routed.event_id, routed.to_json(), tracing.inject())

    def silenced(self, record: Silenced) -> Message:
        return Message(self.topics.outcomes, record.event_id, record.to_json())

    def outcome(self, outcome: Outcome) -> Message:
        self.metrics.outcome(outcome)
        return Message(self.topics.outcomes, outcome.event_id, outcome.to_json(), tracing.inject())

    def dlq(self, record: DlqRecord) -> Message:
        self.metrics.dlq(record)
        value = record.to_json()
        if len(value) > self.max_record_bytes and record.topic is not None:
            # The original stays where it is: the record names its topic and offset.
            value = replace(record, original=None, encoding="none").to_json()
        return Message(self.topics.dlq, record.event_id, value, tracing.inject())

    async def send(self, *messages: Message) -> None:
        """Send in order, then wait until the broker acknowledged every one."""
        await asyncio.gather(*await self.enqueue(*messages))

    async def enqueue(self, *messages: Message) -> list[Awaitable[Any]]:
        """Hand the messages to the producer in order; the acknowledgements to await.

        Straight to the app's producer, not through `Topic.send`: Faust's channel layer
        (a FutureMessage, its callbacks and sensors per record) cost as much as the
        producer itself, for nothing we use."""
        await self.topics.declare_runners(m.topic for m in messages)
        producer = await self.topics.app.maybe_start_producer()
        return [
            await producer.send(
                m.topic.get_topic_name(),
                m.key.encode("utf-8") if m.key is not None else None,
                m.value,
                None,  # partition: by key, as Faust's Topic.send does
                None,  # timestamp: now
                list(m.headers) if m.headers else None,
            )
            for m in self._within_limit(messages)
        ]

    def _within_limit(self, messages: Sequence[Message]) -> list[Message]:
        checked: list[Message] = []
        for m in messages:
            size = len(m.value) + sum(len(k) + len(v) for k, v in m.headers or ())
            if size <= self.max_record_bytes:
                checked.append(m)
                continue
            reason = (
                f"a record of {size} bytes for {m.topic.get_topic_name()} exceeds the record "
                f"limit of {self.max_record_bytes} bytes (POSTEE_MAX_BODY_BYTES + envelope)"
            )
            log.warning("not sent: %s", reason)
            checked += (
                m.instead(reason)
                if m.instead
                else [self.dlq(DlqRecord.for_bytes(None, stage="publish", reason=reason))]
            )
        return checked

    def _unsendable_command(self, command: Command, reason: str) -> list[Message]:
        """A failed outcome (so the command's story ends) and a DLQ record for a command
        that cannot be written even with its event by reference."""
        outcome = records.outcome_without_run(command, "failed", error=f"not issued: {reason}")
        ref = command.event_ref
        dlq = DlqRecord.for_bytes(
            None,
            stage="publish",
            reason=f"command not issued: {reason}",
            event_id=command.event_id,
            topic=ref.topic if ref else None,
            partition=ref.partition if ref else None,
            offset=ref.offset if ref else None,
        )
        return [self.outcome(outcome), self.dlq(dlq)]

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
    stream: faust.StreamT[bytes],
    event: faust.EventT[bytes],
    sent: list[Awaitable[Any]],
    publisher: Publisher | None = None,
) -> None:
    """Acknowledge a consumed record once everything it produced is on the broker.

    Agents read with `stream.noack()`: Faust would otherwise acknowledge a record when
    the agent's loop moves on, and also when an agent is cancelled mid-record at shutdown
    (its iterator acknowledges in a `finally`), which would commit a record whose output
    was never written. A record that is never acknowledged here comes back after a
    restart."""
    try:
        await asyncio.gather(*sent)
    except KafkaError as exc:
        if exc.retriable or publisher is None:
            log.warning("output of %s not acknowledged (%r): redelivered", event.message.tp, exc)
            return
        # The broker refused it for good (too large, invalid): redelivering would refuse
        # it again forever. Record the event in the DLQ and move on.
        reason = f"the broker refused this record's output: {exc!r}"
        await publisher.send(
            publisher.dlq_for(event.value, stage="publish", reason=reason, event=event)
        )
    except Exception:
        log.exception("output of %s was not acknowledged; it will be redelivered", event.message.tp)
        return
    await stream.ack(event)


def manual_acks(stream: faust.StreamT[bytes]) -> faust.StreamT[bytes]:
    """The agent's stream with automatic acknowledgement off (see `ack_after`)."""
    # noack is on faust.Stream but missing from the StreamT protocol.
    return stream.noack()  # type: ignore[attr-defined, no-any-return]
