"""Plain aiokafka clients for the CLI commands that do not run a worker (send, tail)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams import records
from streams.settings import Settings

__all__ = ["produce_events", "tail_topic"]


async def produce_events(
    settings: Settings, events: Sequence[tuple[str, bytes]]
) -> list[tuple[str, str]]:
    """Produce each event unchanged with our headers; return (name, event id) pairs."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = []
        for name, raw in events:
            event_id = records.new_event_id()
            headers = records.event_headers(event_id, "kafka", records.utc_now())
            await producer.send_and_wait(
                settings.topics.name("events"), raw, key=event_id.encode(), headers=headers
            )
            sent.append((name, event_id))
        return sent
    finally:
        await producer.stop()


def as_record(message: Any) -> dict[str, Any]:
    """A consumed message as a printable dict: JSON values parsed, others kept as text."""
    raw: bytes | None = message.value
    value: Any
    try:
        value = json.loads(raw) if raw is not None else None
    except (ValueError, UnicodeDecodeError):
        value = {"base64": base64.b64encode(raw).decode()} if raw is not None else None
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "timestamp": message.timestamp,
        "key": message.key.decode("utf-8", "replace") if message.key else None,
        "headers": {k: v.decode("utf-8", "replace") for k, v in message.headers or ()},
        "value": value,
    }


async def tail_topic(
    settings: Settings,
    topic: str,
    show: Callable[[dict[str, Any]], None],
    *,
    from_beginning: bool = False,
    max_records: int | None = None,
    idle_timeout_s: float | None = None,
) -> int:
    """Print records as they come; no consumer group, so tailing never moves offsets."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    count = 0
    try:
        while max_records is None or count < max_records:
            timeout_ms = int(idle_timeout_s * 1000) if idle_timeout_s else 1000
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch and idle_timeout_s:
                break
            for messages in batch.values():
                for message in messages:
                    show(as_record(message))
                    count += 1
        return count
    finally:
        await consumer.stop()
