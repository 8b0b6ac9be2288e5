"""The gap guard on a real topic: records that never reached the agent are read back, in
order; a redelivery and the first record after the committed offset are not gaps."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faust.events import Event
from faust.types import TP
from faust.types.tuples import Message

from streams.gaps import GapGuard
from streams.settings import Settings
from tests.kafka_support import unique_prefix


def event_at(topic: str, offset: int, generation: int = 1) -> Event:
    message = Message(
        topic=topic,
        partition=0,
        offset=offset,
        timestamp=0.0,
        timestamp_type=0,
        headers=[],
        key=b"k",
        value=b"v",
        checksum=None,
        tp=TP(topic, 0),
        generation_id=generation,
    )
    return Event(None, b"k", b"v", [], message)  # type: ignore[arg-type]


async def test_missing_records_are_read_back_in_order(bootstrap: str) -> None:
    prefix = unique_prefix("gaps")
    settings = Settings.from_env({"POSTEE_KAFKA": bootstrap, "POSTEE_TOPIC_PREFIX": prefix})
    topic = f"{prefix}.actions.exec"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(8):
            await producer.send_and_wait(topic, f"command-{n}".encode(), partition=0)
    finally:
        await producer.stop()
    # The worker's group has committed offset 1 (record 0 done).
    group = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=settings.app_id, enable_auto_commit=False
    )
    await group.start()
    group.assign([TopicPartition(topic, 0)])
    try:
        await group.commit({TopicPartition(topic, 0): OffsetAndMetadata(1, "")})
    finally:
        await group.stop()

    guard = GapGuard(settings)
    await guard.start()
    try:
        assert await guard.missed(event_at(topic, 1)) == []  # where the group left off
        assert await guard.missed(event_at(topic, 2)) == []
        found = await guard.missed(event_at(topic, 5))  # 3 and 4 never came
        assert [(e.message.offset, e.value) for e in found] == [
            (3, b"command-3"),
            (4, b"command-4"),
        ]
        assert all(e.message.tp == TP(topic, 0) for e in found)
        assert await guard.missed(event_at(topic, 4)) == []  # a redelivery is no gap
        assert await guard.missed(event_at(topic, 6)) == []
        # After a rebalance (a new generation) the committed offset is the baseline.
        after = await guard.missed(event_at(topic, 3, generation=2))
        assert [e.message.offset for e in after] == [1, 2]
    finally:
        await guard.stop()
