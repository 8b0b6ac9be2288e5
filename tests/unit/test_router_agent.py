"""The router agent under Faust's test_context: failures become records, the loop goes on."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from streams import config, router
from streams.app import create_app
from streams.evaluator import EngineSpec, Evaluation, SilenceRules
from streams.outcomes import Message, Publisher
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.templates import TemplateRenderer
from tests.unit.engine_support import InlineEngine

CFG = """
routes:
  - name: r
    input: input.kind == "x"
    actions: [a]
actions:
  - {name: a, type: exec, enable: true, exec-script: "true"}
"""


class ExplodingEngine(InlineEngine):
    """Stands in for an engine failure that real rules cannot provoke on demand."""

    async def evaluate(
        self, raw: bytes, only: str | None = None, silences: SilenceRules = ()
    ) -> Evaluation:
        if json.loads(raw).get("explode"):
            return Evaluation(error="rule evaluation failed: engine said no")
        return await super().evaluate(raw, only, silences)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    messages: list[Message] = []

    async def capture(self: Publisher, *batch: Message) -> list[object]:
        messages.extend(batch)
        return []  # nothing to wait for: the broker is not involved

    monkeypatch.setattr(Publisher, "enqueue", capture)
    return messages


@pytest.fixture
async def app(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text(textwrap.dedent(CFG))
    cfg = config.load(path)
    matcher = RouteMatcher.compile([r.as_rule() for r in cfg.routes])
    settings = Settings.from_env({"POSTEE_TOPIC_PREFIX": "unit", "POSTEE_MAX_INPUT_VALUES": "50"})
    app = create_app(settings, cfg, matcher)
    router.install(app)
    app.engine = ExplodingEngine(EngineSpec.of(cfg, matcher, TemplateRenderer({})))
    app.silences.loaded.set()  # no broker here: no silences to read
    app.finalize()
    app.flow_control.resume()
    yield app
    # test_context builds Faust's threaded consumer, whose private event loop is never
    # started nor closed; close it so its sockets do not leak into later tests.
    app.consumer._thread.thread_loop.close()


async def test_evaluation_error_writes_routed_and_dlq_then_goes_on(app, sent):
    agent = app.agents["route_events"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"k1", value=b'{"explode": true}')
        await ctx.put(key=b"k2", value=b'{"kind": "x"}')
    topics = [m.topic.get_topic_name() for m in sent]
    assert topics == ["unit.outcomes", "unit.dlq", "unit.outcomes", "unit.actions.exec"]
    routed, dlq = json.loads(sent[0].value), json.loads(sent[1].value)
    assert (
        routed["kind"] == "routed"
        and routed["routes"] == []
        and "engine said no" in routed["error"]
    )
    assert dlq["stage"] == "route" and "engine said no" in dlq["reason"]
    assert dlq["original"] == '{"explode": true}' and dlq["event_id"] == routed["event_id"]
    assert json.loads(sent[2].value)["routes"] == ["r"]


async def test_an_input_beyond_the_bounds_is_refused_before_the_engine(app, sent):
    agent = app.agents["route_events"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"k1", value=json.dumps({"kind": "x", "n": list(range(60))}).encode())
        await ctx.put(key=b"k2", value=b'{"kind": "x"}')
    topics = [m.topic.get_topic_name() for m in sent]
    assert topics == ["unit.outcomes", "unit.dlq", "unit.outcomes", "unit.actions.exec"]
    reason = "input refused: event has more than 50 JSON values (POSTEE_MAX_INPUT_VALUES)"
    assert json.loads(sent[0].value)["error"] == reason
    assert json.loads(sent[1].value)["reason"] == reason


async def test_undecodable_record_goes_to_dlq(app, sent):
    agent = app.agents["route_events"]
    async with agent.test_context() as ctx:
        await ctx.put(key=b"k1", value=b"\xff\xfe")
    (message,) = sent
    assert message.topic.get_topic_name() == "unit.dlq"
    record = json.loads(message.value)
    assert record["stage"] == "decode" and record["encoding"] == "base64"


async def test_the_producer_is_idempotent_with_acks_all(app):
    from streams.app import IdempotentProducer

    assert isinstance(app.producer, IdempotentProducer)
    assert app.producer._settings_extra() == {"acks": "all", "enable_idempotence": True}
    assert app.conf.producer_acks == -1
