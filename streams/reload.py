"""Hot reload: the config loaded again while running.

The `Reloader` loads the files with `loading.compile_config` (as the CLI does at start)
on SIGHUP, on `POST /reload` (the ingest bridge) and, with `POSTEE_RELOAD_WATCH_S`,
when the files change.

A reload either applies completely or not at all. A new evaluator pool
(`eval_pool.py`) is started with the new routes and templates first; only when every
evaluator is ready are the app's config and engine swapped, in one step of the event
loop. An event already being evaluated finishes with the pool and the config it started
with (the router takes both together), so its `routed` record names the version that
decided it; the old pool is stopped once its last evaluation is answered. Action agents
and the plugin agent read `app.config` per record, so the next command is checked
against the new actions. In-flight commands are not interrupted. A refused reload
(invalid file, an engine that does not start) leaves everything as it was; it is logged
and counted (`postee_config_reloads_total{result="refused"}`).

A runner (`postee runner`) has no routes and no engine: its reload swaps the actions.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mode import Service

from streams.app import PosteeApp
from streams.errors import ConfigError, ConfigErrors
from streams.eval_pool import EvalPool
from streams.evaluator import EngineSpec
from streams.loading import Loaded, compile_config
from streams.settings import Settings

__all__ = ["ReloadResult", "Reloader", "install", "start_engine"]

log = logging.getLogger(__name__)

#: The longest an old evaluator pool may take to answer what it was given before a swap.
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ReloadResult:
    applied: bool
    version: str  #: the version in force after the attempt
    previous: str
    error: str | None = None  #: why it was refused

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_engine(app: PosteeApp, loaded: Loaded) -> EvalPool:
    """An evaluator pool for `loaded` (not started)."""
    spec = EngineSpec.of(loaded.config, loaded.matcher, loaded.renderer)
    pool = EvalPool(spec, app.settings.engine)
    pool.on_replaced = app.metrics.evaluator_restart
    return pool


def start_engine(app: PosteeApp) -> None:
    """The first evaluator pool, for the config the app was built with; it starts and
    stops with the app."""
    pool = new_engine(app, Loaded(app.config, app.matcher, app.renderer))
    app.add_dependency(pool)
    app.engine = pool


def install(app: PosteeApp) -> Reloader:
    """The reloader of a worker or runner (SIGHUP, `POST /reload`, the file watch)."""
    reloader = Reloader(app)
    app.add_dependency(reloader)
    return reloader


class Reloader(Service):
    def __init__(self, app: PosteeApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self._lock = asyncio.Lock()
        self._engines: list[EvalPool] = []  #: pools started by reloads (stopped with us)
        self._watched = _fingerprint(app.settings)

    @property
    def routes(self) -> bool:
        """A worker routes (it has an engine); a runner only runs actions."""
        return hasattr(self.app, "engine")

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def on_stop(self) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for pool in self._engines:
            await pool.stop()

    def _on_sighup(self) -> None:
        self.add_future(self.reload("SIGHUP"))

    @Service.task
    async def _watch(self) -> None:
        interval = self.app.settings.reload_watch_s
        if not interval:
            return
        while not self.should_stop:
            await self.sleep(interval)
            now = _fingerprint(self.app.settings)
            if now != self._watched:
                self._watched = now
                await self.reload("file change")

    async def reload(self, trigger: str) -> ReloadResult:
        """Load the config again and apply it, or refuse it and keep the one in force."""
        async with self._lock:  # one at a time: a second waits and loads the newest file
            previous = self.app.config.version
            try:
                loaded = await asyncio.to_thread(
                    compile_config, self.app.settings, with_routes=self.routes
                )
                _refuse_new_types(self.app, loaded)
                if self.routes:
                    await self._swap_engine(loaded)
                else:
                    self.app.config = loaded.config
            except (ConfigError, ConfigErrors, RuntimeError, TimeoutError) as exc:
                error = _describe(exc)
                log.error(
                    "config reload (%s) refused, version %s stays: %s", trigger, previous, error
                )
                self.app.metrics.config_reload("refused")
                return ReloadResult(False, previous, previous, error)
            version = self.app.config.version
            log.info("config reloaded (%s): version %s -> %s", trigger, previous, version)
            self.app.metrics.config_reload("applied")
            return ReloadResult(True, version, previous)

    async def _swap_engine(self, loaded: Loaded) -> None:
        pool = new_engine(self.app, loaded)
        try:
            await pool.start()
        except BaseException:
            await pool.stop()
            raise
        old = self.app.engine
        app = self.app
        # One step of the loop: whoever reads the config and the engine sees both new.
        app.config, app.matcher, app.renderer, app.engine = (
            loaded.config,
            loaded.matcher,
            loaded.renderer,
            pool,
        )
        self._engines.append(pool)
        await old.drain(DRAIN_TIMEOUT_S)
        await old.stop()
        if old in self._engines:
            self._engines.remove(old)


def _refuse_new_types(app: PosteeApp, loaded: Loaded) -> None:
    """A worker consumes the command topics of the types it started with: a config that
    brings another type needs a restart, or its commands would wait unseen."""
    if app.action_types is None:  # no action agents here (a runner reads its own topic)
        return
    new = [kind for kind in loaded.config.action_types() if kind not in app.action_types]
    if new:
        running = ", ".join(sorted(app.action_types)) or "none"
        raise ConfigError(
            f"action type(s) {', '.join(new)} are new to this worker, which runs commands"
            f" of {running} only: restart it to run them",
            file=loaded.config.file,
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConfigErrors):
        return "; ".join(str(e) for e in exc.errors)
    return str(exc) or type(exc).__name__


def _fingerprint(settings: Settings) -> tuple[tuple[str, int, int], ...]:
    """(path, mtime, size) of the config file and the Rego files next to it: what a
    reload would read. Cheap enough to poll every few seconds."""
    paths = [settings.config_path]
    for directory in (settings.rego_filters_path, settings.templates_path):
        if directory.is_dir():
            paths += sorted(directory.rglob("*.rego"))
    found = []
    for path in paths:
        try:
            stat = Path(path).stat()
        except OSError:
            found.append((str(path), -1, -1))
            continue
        found.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(found)
