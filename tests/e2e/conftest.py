from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.conftest import missing_service, service_env
from tests.integration.docker.conftest import engine_host, test_image  # noqa: F401 - fixtures
from tests.integration.kubernetes.conftest import admin, namespace  # noqa: F401 - fixtures
from tests.kafka_support import TopicReader, broker_reachable, issued_by_us, open_reader


@pytest.fixture(scope="session")
def bootstrap() -> str:
    server = service_env().get("POSTEE_KAFKA")
    if not server:
        missing_service("POSTEE_KAFKA is not set: run `make services` first")
    assert server is not None
    if not asyncio.run(broker_reachable(server)):
        missing_service(f"no Kafka broker answers at {server}: run `make services` first")
    return server


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
async def reader_factory(bootstrap: str) -> AsyncIterator[object]:
    readers: list[TopicReader] = []

    async def open_topic(topic: str) -> TopicReader:
        reader = await open_reader(bootstrap, topic)
        readers.append(reader)
        return reader

    yield open_topic
    for reader in readers:
        await reader.consumer.stop()


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("worker-logs")


@pytest.fixture(scope="module", autouse=True)
async def drop_module_topics(bootstrap: str) -> AsyncIterator[None]:
    """Delete the topics a test module's workers created (unique `test-` prefixes): with
    ~40 topics per worker, a whole suite's partitions would otherwise exhaust the shared
    broker's open files (seen: 19,890 partition folders after a few runs). Only topics of
    prefixes this process issued: another test run on the same broker keeps its own."""
    before = await _test_topics(bootstrap)
    yield
    if os.environ.get("POSTEE_KEEP_TEST_TOPICS") == "1":  # to read them after a failure
        return
    created = sorted(t for t in await _test_topics(bootstrap) - before if issued_by_us(t))
    if created:
        kafka = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await kafka.start()
        try:
            await kafka.delete_topics(created)
        finally:
            await kafka.close()


async def _test_topics(bootstrap: str) -> set[str]:
    kafka = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await kafka.start()
    try:
        return {t for t in await kafka.list_topics() if t.startswith("test-")}
    finally:
        await kafka.close()
