"""A planted secret reaches its targets and no record, topic or log line anywhere."""

from __future__ import annotations

import hashlib
import textwrap
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.http_sink import Sink, http_sink
from tests.kafka_support import start_worker, value

pytestmark = pytest.mark.kafka


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with http_sink() as server:
        yield server


async def test_secret_never_appears_in_topics_or_logs(
    bootstrap, log_dir, tmp_path, sink, reader_factory
):
    secret = f"s3cret-{uuid.uuid4().hex}"
    digest_file = tmp_path / "digest"
    config = tmp_path / "cfg.yaml"
    config.write_text(
        textwrap.dedent(f"""
        routes:
          - name: ship
            input: input.test == "secret"
            serialize-actions: true
            actions: [use-it, send-it]
        actions:
          - name: use-it
            type: exec
            enable: true
            env: [API_KEY=$SHIP_TOKEN, OUT={digest_file}]
            exec-script: |
              echo "key=$API_KEY"
              printf '%s' "$API_KEY" | sha256sum | cut -d' ' -f1 > "$OUT"
          - name: send-it
            type: http
            enable: true
            url: {sink.base_url}/in/${{SHIP_TOKEN}}
            headers:
              Authorization: ["Bearer ${{SHIP_TOKEN}}"]
            retries: 0
    """)
    )
    worker = start_worker(bootstrap, config, log_dir, "secret", {"SHIP_TOKEN": secret})
    try:
        response = httpx.post(worker.base_url + "/", json={"test": "secret"}, timeout=10)
        event_id = response.json()["id"]
        outcomes = await reader_factory(worker.topic("outcomes"))
        used, sent = (
            value(m)
            for m in await outcomes.wait_for(
                lambda m: value(m)["kind"] == "outcome" and value(m)["event_id"] == event_id,
                count=2,
            )
        )
        assert used["status"] == "succeeded" and used["detail"]["stdout"] == "key=[redacted]\n"
        assert digest_file.read_text().strip() == hashlib.sha256(secret.encode()).hexdigest()
        assert sent["status"] == "succeeded" and sent["detail"]["url"].endswith("/in/[redacted]")
        (request,) = sink.on(f"/in/{secret}")
        assert request.headers["Authorization"] == f"Bearer {secret}"

        blobs = await everything_under(bootstrap, worker.prefix)
        assert event_id.encode() in blobs[worker.topic("outcomes")]  # the scan does read
        assert b"[redacted]" in blobs[worker.topic("outcomes")]
        for topic, blob in blobs.items():
            assert secret.encode() not in blob, topic
    finally:
        worker.stop()
    assert secret not in worker.log()


async def everything_under(bootstrap: str, prefix: str) -> dict[str, bytes]:
    """Every key and value of every topic of the prefix (and its changelogs), per topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(prefix)]
    finally:
        await admin.close()
    assert len(topics) > 8  # the prefix's topics and its changelogs
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in consumer.partitions_for_topic(t) or await _partitions(consumer, t)
        ]
        ends = await consumer.end_offsets(partitions)
        todo = {tp for tp in partitions if ends[tp] > 0}
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        blobs: dict[str, bytes] = dict.fromkeys(topics, b"")
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=5000)
            assert batch, f"stalled reading {todo}"
            for tp, messages in batch.items():
                blobs[tp.topic] += b"".join((m.value or b"") + (m.key or b"") for m in messages)
                if messages[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
        return blobs
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return set(consumer.partitions_for_topic(topic) or ())
