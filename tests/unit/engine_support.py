"""Helpers for tests of the engine: a spec from config text, and an in-process engine."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streams import config
from streams.evaluator import EngineSpec, Evaluation, Evaluator, SilenceRules
from streams.rules import RouteMatcher
from streams.templates import TemplateRenderer


def spec_of(cfg_text: str, directory: Path, templates: Path | None = None) -> EngineSpec:
    path = directory / "cfg.yaml"
    path.write_text(cfg_text)
    cfg = config.load(path)
    matcher = RouteMatcher.compile([r.as_rule() for r in cfg.routes])
    renderer = TemplateRenderer.compile(cfg.templates, templates or directory)
    return EngineSpec.of(cfg, matcher, renderer)


class InlineEngine:
    """The pool's interface on an Evaluator in this process (for agent unit tests)."""

    def __init__(self, spec: EngineSpec) -> None:
        self.evaluator = Evaluator(spec)

    async def evaluate(
        self, raw: bytes, only: str | None = None, silences: SilenceRules = ()
    ) -> Evaluation:
        return self.evaluator.evaluate(raw, only, silences)

    async def render_batch(
        self, template: str, messages: Sequence[Mapping[str, Any]]
    ) -> tuple[str, Any]:
        rendered = self.evaluator.render_batch(template, messages)
        return "ok", None if rendered is None else rendered.as_dict()


def evaluator_of(cfg: config.PosteeConfig) -> Evaluator:
    matcher = RouteMatcher.compile([r.as_rule() for r in cfg.routes])
    return Evaluator(EngineSpec.of(cfg, matcher, TemplateRenderer({})))


def decide(incoming: Any, cfg: config.PosteeConfig, evaluator: Evaluator, at_ms: int = 0) -> Any:
    """Evaluate as an evaluator process would, then decide."""
    from streams import routing

    raw = json.dumps(incoming.payload).encode()
    return routing.decide(incoming, cfg, evaluator.evaluate(raw, incoming.only_route), at_ms)
