"""`postee silence add|list|expire`: plain aiokafka clients on `<prefix>.silences`."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams import topics
from streams.errors import EventError
from streams.settings import Settings
from streams.silence_reader import silences_topic_name
from streams.silences import Silence, decode_silence

__all__ = ["read_silences", "write_silence"]


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
        bootstrap_servers=settings.kafka.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    found: dict[str, Silence] = {}
    try:
        await consumer.topics()
        partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        if not partitions:
            return found
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        todo = {tp for tp in partitions if ends[tp] > 0}
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for tp, messages in batch.items():
                for message in messages:
                    key = message.key.decode("utf-8", "replace") if message.key else None
                    try:
                        silence = decode_silence(message.value, key)
                    except EventError:
                        continue  # not ours to show; the workers log it
                    if silence is None:
                        found.pop(key or "", None)
                    else:
                        found[silence.id] = silence
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return found
    finally:
        await consumer.stop()
