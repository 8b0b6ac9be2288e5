"""A Faust worker running only the router agent: no ingest bridge, no action agents.

Built the way `postee run` builds its worker (settings, the CLI's config loading and
compilation, app, router, topic declarer, `PosteeWorker`, log level `info`), minus the
executor and the plugin agent (the generated routes have no plugins), so commands pile up
on the action topics and nothing is executed. The benchmark starts it as
a subprocess and stops it with SIGTERM (Faust's clean shutdown).

Keep `info`: at `warning` or above, Faust's worker sets the root logger to DEBUG for its
terminal spinner, so every debug line of aiokafka and Faust becomes a LogRecord.

    python -m bench.router_worker CFG --bootstrap HOST:PORT --prefix PREFIX [--profile OUT]
"""

from __future__ import annotations

import argparse
import cProfile
from pathlib import Path

import faust

from streams import router
from streams.app import PosteeWorker, create_app
from streams.cli import _load
from streams.settings import IngestSettings, KafkaSettings, Settings, TopicSettings
from streams.topics import TopicDeclarer, internal_specs


def build_worker(cfg: Path, bootstrap: str, prefix: str, loglevel: str) -> faust.Worker:
    settings = Settings(
        config_path=cfg,
        rego_filters_path=cfg.parent / "rego-filters",
        kafka=KafkaSettings(bootstrap=bootstrap, data_dir=cfg.parent / "faust-data"),
        topics=TopicSettings(prefix=prefix),
        ingest=IngestSettings(enabled=False),
        engine=Settings.from_env().engine,  # POSTEE_EVAL_WORKERS etc., as `postee run`
    )
    loaded = _load(settings)  # exactly what `postee run` does
    app = create_app(settings, loaded.config, loaded.matcher, loaded.renderer)
    router.install(app)
    declarer = TopicDeclarer(settings, app.postee_topics.specs() + internal_specs(app))
    return PosteeWorker(app, declarer, loglevel=loglevel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cfg", type=Path)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--loglevel", default="info", help="as `postee run` (see above)")
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
