"""Does a route's template suit its outputs? `postee validate` warns when it does not.

A template's shape (see `actions.notify.shape`) is read from its package name first, as
upstream names them (`postee.vuls.slack`, `postee.vuls.html`, `...jira`,
`postee.rawmessage.json`), else from what it renders for an empty event. A notifier
declares the shapes it takes (`fits`); a route that hands another one (HTML to Slack is
the mistake upstream's maintainers see most) gets a warning naming route, template,
action and what would fit. The delivery still converts what it can.
"""

from __future__ import annotations

from collections.abc import Iterator

import actions
from actions.notify import shape
from streams.config import PosteeConfig, Template
from streams.templates import TemplateError, TemplateRenderer

__all__ = ["template_shape", "warnings"]

#: A package name's last parts → the shape upstream's templates of that name give.
_NAMED = {
    "slack": "blocks",
    "html": "html",
    "jira": "jira",
    "json": "json",
    "teams": "card",
    "cyclonedx": "json",
}
_WORDS = {
    "blocks": "Slack blocks",
    "card": "an Adaptive Card",
    "json": "JSON",
    "html": "HTML",
    "jira": "Jira wiki text",
    "text": "plain or Markdown text",
}


def template_shape(template: Template, renderer: TemplateRenderer) -> str | None:
    """The shape of what a template gives, or None when it cannot be told."""
    parts = (template.rego_package or "").lower().split(".")
    for part in reversed(parts[1:]):
        if part in _NAMED:
            return _NAMED[part]
    try:
        return shape.detect(renderer.render(template.name, {}).description)
    except TemplateError:
        return None


def warnings(config: PosteeConfig, renderer: TemplateRenderer) -> Iterator[str]:
    shapes: dict[str, str | None] = {}
    for route in config.routes:
        if route.template is None or route.template not in config.templates:
            continue
        if route.template not in shapes:
            shapes[route.template] = template_shape(config.templates[route.template], renderer)
        given = shapes[route.template]
        for name in route.actions:
            action = config.actions.get(name)
            if given is None or action is None or not action.enable:
                continue
            fits = getattr(actions.REGISTRY.get(action.type), "fits", shape.ALL)
            if given not in fits:
                wanted = " or ".join(_WORDS[s] for s in sorted(fits))
                yield (
                    f"{config.file}: route '{route.name}': template '{route.template}' gives "
                    f"{_WORDS[given]}, which the {action.type} action '{name}' does not take "
                    f"well (it takes {wanted}): pick a template made for {action.type}"
                )
