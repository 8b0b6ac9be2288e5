"""PosteeConsumer: no commit passes a record still in flight, and the seek at the end of a
recovery rewinds partitions that have no commit (streams/consumer.py)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from faust.types.tuples import Message

from streams import config
from streams.app import create_app
from streams.consumer import PosteeConsumer
from streams.rules import RouteMatcher
from streams.settings import Settings

CFG = """
routes: []
actions: []
"""
RETRY = TP("unit.retry", 0)


@pytest.fixture
def consumer(tmp_path: Path) -> Iterator[PosteeConsumer]:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    settings = Settings.from_env({"POSTEE_TOPIC_PREFIX": "unit"})
    app = create_app(settings, config.load(path), RouteMatcher.compile([]))
    made = app.consumer
    assert isinstance(made, PosteeConsumer)
    yield made
    made._thread.thread_loop.close()  # never started: only its sockets to free


def handed_out(consumer: PosteeConsumer, tp: TP, offset: int) -> Message:
    """A record the conductor gave an agent (tracked as not acknowledged yet)."""
    message = Message(tp.topic, tp.partition, offset, 0.0, 0, [], b"k", b"v", None, tp=tp)
    consumer.track_message(message)
    return message


def done(consumer: PosteeConsumer, tp: TP, *offsets: int) -> None:
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)


def test_no_commit_past_a_record_held_for_its_retry(consumer):
    consumer._committed_offset[RETRY] = 5
    held = handed_out(consumer, RETRY, 5)  # due later; 6 and 7 were due sooner
    done(consumer, RETRY, 6, 7)
    assert consumer._new_offset(RETRY) is None
    assert consumer._filter_committable_offsets([RETRY]) == {}  # the commit round
    consumer.ack(held)
    assert consumer._filter_committable_offsets([RETRY]) == {RETRY: 8}


def test_faust_alone_commits_past_it(consumer):
    """What the override is for: Faust's own rule commits 8 with record 5 in flight."""
    consumer._committed_offset[RETRY] = 5
    held = handed_out(consumer, RETRY, 5)
    done(consumer, RETRY, 6, 7)
    assert not held.acked
    assert aiokafka_driver.Consumer._new_offset(consumer, RETRY) == 8


def test_nothing_committed_yet_and_the_first_record_in_flight(consumer):
    first = handed_out(consumer, RETRY, 0)  # held by its timer, as an agent holds it
    done(consumer, RETRY, 1, 2)
    assert consumer._new_offset(RETRY) is None
    consumer.ack(first)
    assert consumer._new_offset(RETRY) == 3


def test_commits_up_to_the_record_in_flight(consumer):
    consumer._committed_offset[RETRY] = 5
    running = handed_out(consumer, RETRY, 7)
    done(consumer, RETRY, 5, 6, 8)
    assert consumer._new_offset(RETRY) == 7
    assert running.offset == 7 and not running.acked


def test_records_of_other_partitions_do_not_hold_it_back(consumer):
    consumer._committed_offset[RETRY] = 5
    elsewhere = handed_out(consumer, TP("unit.retry", 1), 0)
    done(consumer, RETRY, 5, 6)
    assert consumer._new_offset(RETRY) == 7
    assert consumer._new_offset(elsewhere.tp) is None


async def test_seek_rewinds_partitions_without_a_commit_every_time(consumer, monkeypatch):
    fresh, zero, committed = (TP("unit.retry", p) for p in range(3))
    changelog = TP("unit-streams-command-ledger-http-changelog", 0)
    sought: list[Mapping[TP, int]] = []

    async def seek_to_committed() -> Mapping[TP, int | None]:
        return {fresh: None, zero: 0, committed: 7, changelog: None}

    async def earliest_offsets(*tps: TP) -> Mapping[TP, int]:
        assert set(tps) == {fresh, zero}  # the changelog is Faust's recovery's to seek
        return {fresh: 0, zero: 2}

    async def seek_wait(partitions: Mapping[TP, int]) -> None:
        sought.append(dict(partitions))

    monkeypatch.setattr(consumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest_offsets)
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setattr(consumer.app.topics, "acks_enabled_for", lambda t: t == "unit.retry")
    consumer.resume_flow()

    await consumer.perform_seek()
    assert sought == [{fresh: 0, zero: 2}]  # aiokafka seeks only offsets above 0
    assert consumer._committed_offset[committed] == 7
    assert consumer._read_offset[committed] == 7 and consumer._read_offset[fresh] is None
    assert not consumer.flow_active  # until Faust resumes it, after clearing its queues

    # Again (the fetcher dropped records fetched while the flow was stopped): the
    # partitions without a commit are sought back again, not left where the drop was.
    await consumer.perform_seek()
    assert sought == [{fresh: 0, zero: 2}] * 2


def test_the_aiokafka_consumer_gets_our_fetch_wait_not_faust_1500_ms(tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    for env, expected in (({}, 100), ({"POSTEE_FETCH_MAX_WAIT_MS": "250"}, 250)):
        settings = Settings.from_env({"POSTEE_TOPIC_PREFIX": "unit", **env})
        app = create_app(settings, config.load(path), RouteMatcher.compile([]))
        thread = app.consumer._thread
        loop = thread.thread_loop
        try:
            # Built on the thread's loop, as Faust builds it when the thread starts.
            made = loop.run_until_complete(_create(thread, app.transport))
            assert made._fetch_max_wait_ms == expected
            loop.run_until_complete(made.stop())
        finally:
            loop.close()


async def _create(thread, transport):
    return thread._create_worker_consumer(transport)
