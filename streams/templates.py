"""Postee templates: Rego packages that turn an event into a title and a description.

A template is `rego-package` (a package found in the templates folder), `body` (inline
Rego) or `url` (Rego fetched once at start). The package must give `title` and `result`
(a JSON `result` becomes compact JSON text) and may give `url`. All templates are compiled
once into one bundle; rendering costs one `set_input` and three entrypoint queries.

A template that cannot render an event raises `TemplateError` naming the template and what
is missing; the router records it in the command, whose outcome is then `failed`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import regopy

from streams import rego
from streams.config import Template
from streams.errors import ConfigError

__all__ = ["Rendered", "TemplateError", "TemplateRenderer"]

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([\w.]+)", re.MULTILINE)
_ERROR_MSG = re.compile(r"\(errormsg \d+:(.*?)\)\s*$", re.MULTILINE)
#: Rego fetched from a template `url` at start: bounded in time and size.
FETCH_TIMEOUT_S = 10.0
MAX_FETCH_BYTES = 1024 * 1024
_FIELDS = ("title", "result", "url", "extra")
#: Upstream's optional `result_<name>` values (ServiceNow reads them), gathered into
#: `extra`: a template that gives none of them renders `extra` as an empty object.
EXTRA_VALUES = (
    "date",
    "severity",
    "category",
    "subcategory",
    "assigned_to",
    "assigned_group",
    "summary",
)


@dataclass(frozen=True)
class Rendered:
    title: str
    description: str
    url: str | None = None
    #: The template's `result_<name>` values that it gives (see EXTRA_VALUES).
    extra: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "title": self.title,
            "description": self.description,
            "url": self.url,
        }
        if self.extra:
            fields["extra"] = dict(self.extra)
        return fields


class TemplateError(Exception):
    def __init__(self, template: str, reason: str) -> None:
        self.template = template
        self.reason = reason
        super().__init__(f"template '{template}': {reason}")


@dataclass(frozen=True)
class _Source:
    template: str
    package: str
    modules: tuple[tuple[str, str], ...]  #: (name, Rego text)
    #: The template's `aggregation_pkg`: renders a batch (input: the list of rendered
    #: messages, each with title, description and url) for aggregating routes.
    aggregation: str | None = None


class TemplateRenderer:
    """All templates in one bundle; build it with `compile`. Use it from one thread only."""

    def __init__(self, sources: Mapping[str, _Source]) -> None:
        self._index = {name: i for i, name in enumerate(sources)}
        self._aggregates: dict[str, bool] = {}
        self._engine: tuple[regopy.Interpreter, regopy.Bundle] | None = None
        self._thread = rego.OneThread("TemplateRenderer")
        if sources:
            modules = {m for s in sources.values() for m in s.modules}
            modules |= {_gather(f"t{i}", s.package) for i, s in enumerate(sources.values())}
            entrypoints = [f"postee_render/t{i}/{f}" for i in range(len(sources)) for f in _FIELDS]
            for i, source in enumerate(sources.values()):
                if source.aggregation:
                    modules.add(_gather(f"a{i}", source.aggregation))
                    entrypoints += [f"postee_render/a{i}/{f}" for f in _FIELDS]
            self._aggregates = {n: s.aggregation is not None for n, s in sources.items()}
            try:
                bundle = rego.build(sorted(modules), entrypoints)
            except rego.EngineFailure as exc:
                raise ConfigError(f"templates do not compile together: {_reason(exc)}") from None
            self._engine = (rego.new_interpreter(), bundle)

    @classmethod
    def compile(
        cls,
        templates: Mapping[str, Template],
        templates_path: Path,
        config_file: Path | None = None,
    ) -> TemplateRenderer:
        """Load and compile every template; a broken one raises ConfigError naming it."""
        library = (
            _library(templates_path) if any(t.rego_package for t in templates.values()) else {}
        )
        sources = {}
        for name, template in templates.items():
            where, key = f"template '{name}'", _key(template)
            try:
                source = _with_aggregation(
                    _source(name, template, library, templates_path), library
                )
            except rego.EngineFailure as exc:
                raise ConfigError(_reason(exc), file=config_file, where=where, key=key) from None
            except (OSError, ValueError, httpx.HTTPError) as exc:
                raise ConfigError(str(exc), file=config_file, where=where, key=key) from None
            sources[name] = source
        return cls(sources)

    def render(
        self, name: str, event: Mapping[str, object], encoded: rego.Encoded | None = None
    ) -> Rendered:
        """Render one event; `encoded`, when given, is that event already encoded."""
        return self._render(name, f"t{self._index.get(name)}", encoded or event)

    def render_batch(self, name: str, messages: Sequence[Mapping[str, Any]]) -> Rendered | None:
        """A batch through the template's aggregation package; None when it has none."""
        if not self._aggregates.get(name):
            return None
        return self._render(name, f"a{self._index[name]}", messages)

    def _render(self, name: str, slot: str, document: object) -> Rendered:
        if name not in self._index or self._engine is None:
            raise TemplateError(name, "is not defined")
        self._thread.enter()
        runner, bundle = self._engine
        prefix = f"postee_render/{slot}"
        try:
            rego.set_input(runner, document)
            title, result, url, extra = (
                rego.query(runner, bundle, f"{prefix}/{f}") for f in _FIELDS
            )
        except rego.EngineFailure as exc:
            raise TemplateError(name, f"Rego error: {_reason(exc)}") from None
        except (regopy.RegoError, ValueError, TypeError, RecursionError) as exc:
            raise TemplateError(name, f"event cannot be converted for the engine: {exc}") from None
        missing = [f for f, v in (("title", title), ("result", result)) if v is None]
        if missing:
            raise TemplateError(
                name, f"the package gives no {' and no '.join(missing)} for this event"
            )
        return Rendered(
            _text(title),
            _text(result),
            _text(url) if url is not None else None,
            extra if isinstance(extra, dict) and extra else None,
        )


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _key(template: Template) -> str:
    return "rego-package" if template.rego_package else "body" if template.body else "url"


def _gather(slot: str, package: str) -> tuple[str, str]:
    lines = [f"package postee_render.{slot}", "import rego.v1"]
    lines += [f"{field} := data.{package}.{field}" for field in _FIELDS if field != "extra"]
    lines += [f'extra["{name}"] := data.{package}.result_{name}' for name in EXTRA_VALUES]
    return f"render/{slot}.rego", "\n".join(lines) + "\n"


def _with_aggregation(source: _Source, library: Mapping[str, list[tuple[str, str]]]) -> _Source:
    """Compile the template alone and read its `aggregation_pkg` (a constant in practice);
    add that package's files when it names one."""
    probe = (
        "probe.rego",
        f"package postee_probe\naggregation_pkg := data.{source.package}.aggregation_pkg\n",
    )
    bundle = rego.build(
        [*source.modules, probe],
        [f"{source.package.replace('.', '/')}/title", "postee_probe/aggregation_pkg"],
    )
    runner = rego.new_interpreter()
    rego.set_input(runner, {})
    package = rego.query(runner, bundle, "postee_probe/aggregation_pkg")
    if package is None:
        return source
    if not isinstance(package, str):
        raise ValueError(f"aggregation_pkg must be a package name, got {package!r}")
    own = {found.group(1) for _, text in source.modules if (found := _PACKAGE.search(text))}
    if package not in own and package not in library:
        raise ValueError(f"aggregation_pkg {package} is not in the templates folder")
    modules = source.modules if package in own else (*source.modules, *library[package])
    return _Source(source.template, source.package, tuple(modules), package)


def _library(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Every .rego file of the templates folder, by package."""
    if not path.is_dir():
        raise ConfigError(f"templates folder not found: {path}", key="POSTEE_TEMPLATES_PATH")
    packages: dict[str, list[tuple[str, str]]] = {}
    for file in sorted(path.rglob("*.rego")):
        text = file.read_text(encoding="utf-8")
        found = _PACKAGE.search(text)
        if found:
            packages.setdefault(found.group(1), []).append((str(file), text))
    return packages


def _source(
    name: str, template: Template, library: Mapping[str, list[tuple[str, str]]], path: Path
) -> _Source:
    if template.rego_package:
        package = template.rego_package
        if package not in library:
            raise ValueError(f"no .rego file in {path} declares package {package}")
        # The package's files, plus shared helpers declared in plain `package postee`.
        modules = [*library[package], *(library.get("postee", []) if package != "postee" else [])]
        return _Source(name, package, tuple(modules))
    text = template.body if template.body else _fetch(str(template.url))
    found = _PACKAGE.search(text)
    if not found:
        raise ValueError("the Rego text has no `package` line")
    return _Source(name, found.group(1), ((f"template/{name}.rego", text),))


def _fetch(url: str) -> str:
    with httpx.stream("GET", url, timeout=FETCH_TIMEOUT_S, follow_redirects=True) as response:
        response.raise_for_status()
        body = b""
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > MAX_FETCH_BYTES:
                raise ValueError(f"{url} is larger than {MAX_FETCH_BYTES} bytes")
    return body.decode("utf-8")


def _reason(exc: rego.EngineFailure) -> str:
    found = _ERROR_MSG.search(str(exc))
    return found.group(1).strip() if found else str(exc).strip()[:300] or "engine error"
