"""The one way a config file becomes usable: read, validated, routes and templates compiled.

Any problem raises `ConfigErrors` naming the file, the route or action and the key. The
CLI calls it at start (and exits on errors); the reloader (`reload.py`) calls it again
while running. No Faust: `postee validate` and the other commands use it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams import config as config_module
from streams.config import PosteeConfig
from streams.errors import ConfigError, ConfigErrors
from streams.rules import RouteMatcher
from streams.settings import Settings
from streams.templates import TemplateRenderer

__all__ = ["Loaded", "compile_config"]


@dataclass(frozen=True)
class Loaded:
    config: PosteeConfig
    matcher: RouteMatcher
    renderer: TemplateRenderer


def compile_config(settings: Settings, *, with_routes: bool = True) -> Loaded:
    """The config with its routes and templates compiled; `ConfigErrors` otherwise."""
    config = config_module.load(
        settings.config_path, settings.rego_filters_path, with_routes=with_routes
    )
    if not with_routes:
        return Loaded(config, RouteMatcher.compile([]), TemplateRenderer({}))
    errors = config_module.rule_errors(config)
    renderer = TemplateRenderer({})
    try:
        renderer = TemplateRenderer.compile(config.templates, settings.templates_path, config.file)
    except ConfigError as exc:
        errors.append(exc)
    if errors:
        raise ConfigErrors(errors)
    return Loaded(config, RouteMatcher.compile([r.as_rule() for r in config.routes]), renderer)
