"""The app's Kafka and process plumbing. Its partitioner must place every key where
Kafka's default partitioner does: other producers (the bridge of another version,
`postee send`, a Java client) and the consumers' ordering per key rely on it."""

from __future__ import annotations

import asyncio
import sys

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from streams.app import KeyPartitioner, create_app, watch_children_with_pidfd
from streams.config import PosteeConfig
from streams.rules import RouteMatcher
from streams.settings import Settings

DEFAULT = DefaultPartitioner()
OURS = KeyPartitioner()


@given(st.binary(min_size=1, max_size=64), st.integers(1, 64))
def test_a_key_goes_where_the_default_partitioner_puts_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    first = OURS(key, partitions, partitions)
    assert first == DEFAULT(key, partitions, partitions)
    assert OURS(key, partitions, partitions) == first  # remembered, the same


def test_no_key_goes_to_an_available_partition() -> None:
    assert {OURS(None, [0, 1, 2, 3], [2]) for _ in range(20)} == {2}


def test_the_app_produces_with_it(tmp_path) -> None:
    settings = Settings.from_env({"POSTEE_DATA_DIR": str(tmp_path)})
    config = PosteeConfig(file=tmp_path / "cfg.yaml", routes=(), templates={}, actions={})
    app = create_app(settings, config, RouteMatcher.compile([]))
    assert isinstance(app.conf.producer_partitioner, KeyPartitioner)


async def test_subprocesses_are_watched_through_a_pidfd() -> None:
    previous = asyncio.get_child_watcher()
    watch_children_with_pidfd()
    try:
        if sys.version_info < (3, 12):  # 3.12 uses a pidfd itself; the call then does nothing
            assert isinstance(asyncio.get_child_watcher(), asyncio.PidfdChildWatcher)
        process = await asyncio.create_subprocess_exec("/bin/sh", "-c", "exit 3")
        assert await asyncio.wait_for(process.wait(), 10) == 3
    finally:
        asyncio.set_child_watcher(previous)
