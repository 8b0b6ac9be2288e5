"""`postee silence add|list|expire`: plain aiokafka clients on `<prefix>.silences`."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from streams import topics
from streams.errors import EventError
from streams.settings import Settings
from streams.silence_reader import catch_up, silences_topic_name
from streams.silences import Silence, decode_silence

__all__ = ["read_silences", "write_silence"]

#: How long reading the whole silences topic may take.
READ_DEADLINE_S = 30.0


async def write_silence(settings: Settings, silence: Silence) -> None:
    """Write one silence (new, or a new version of one), creating the topic if needed."""
    await topics.declare_topics(settings, [topics.silences_spec(settings)])
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            silences_topic_name(settings), silence.to_json(), key=silence.id.encode()
        )
    finally:
        await producer.stop()


async def read_silences(settings: Settings) -> dict[str, Silence]:
    """Every silence on the topic, latest version of each (empty when there is no topic)."""
    name = silences_topic_name(settings)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: dict[str, Silence] = {}

    def apply(message: ConsumerRecord[bytes, bytes]) -> None:
        key = message.key.decode("utf-8", "replace") if message.key else None
        try:
            silence = decode_silence(message.value, key)
        except EventError:
            return  # not ours to show; the workers log it
        if silence is None:
            found.pop(key or "", None)
        else:
            found[silence.id] = silence

    try:
        if name in await consumer.topics():
            await catch_up(consumer, name, apply, READ_DEADLINE_S)
        return found
    finally:
        await consumer.stop()
