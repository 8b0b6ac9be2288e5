"""A Faust worker running only the router agent: no ingest bridge, no action agents.

Built the way `postee run` builds its worker (settings, config, compiled routes, app,
router, topic declarer), minus the executor, so commands pile up on the action topics
and nothing is executed. The benchmark starts it as a subprocess and stops it with
SIGTERM (Faust's clean shutdown).

    python -m bench.router_worker CFG --bootstrap HOST:PORT --prefix PREFIX [--profile OUT]
"""

from __future__ import annotations

import argparse
import cProfile
from pathlib import Path

import faust

from streams import config as config_module
from streams import router
from streams.app import create_app
from streams.rules import RouteMatcher
from streams.settings import IngestSettings, KafkaSettings, Settings, TopicSettings
from streams.topics import TopicDeclarer


def build_worker(cfg: Path, bootstrap: str, prefix: str, loglevel: str) -> faust.Worker:
    settings = Settings(
        config_path=cfg,
        rego_filters_path=cfg.parent / "rego-filters",
        kafka=KafkaSettings(bootstrap=bootstrap),
        topics=TopicSettings(prefix=prefix),
        ingest=IngestSettings(enabled=False),
    )
    postee_config = config_module.load(settings.config_path, settings.rego_filters_path)
    matcher = RouteMatcher.compile([r.as_rule() for r in postee_config.routes])
    app = create_app(settings, postee_config, matcher)
    router.install(app)
    declarer = TopicDeclarer(settings, app.postee_topics.specs())
    return faust.Worker(app, declarer, loglevel=loglevel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cfg", type=Path)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--loglevel", default="warning")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the worker here")
    args = parser.parse_args()
    worker = build_worker(args.cfg, args.bootstrap, args.prefix, args.loglevel)
    if args.profile is None:
        worker.execute_from_commandline()
    profiler = cProfile.Profile()
    try:
        profiler.runcall(worker.execute_from_commandline)
    finally:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
