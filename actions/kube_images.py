"""Container image references, compared as the container runtime resolves them.

`nginx`, `docker.io/library/nginx:latest` and `index.docker.io/library/nginx:latest` are
one image; a digest, when both sides have one, decides over tags.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from actions.base import ActionPermanentError

__all__ = ["ImageRef", "parse_image"]

#: Docker Hub's other names.
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"\w[\w.\-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+([+._\-][a-z0-9]+)*:[a-zA-Z0-9=_\-]+")


class ImageRef(NamedTuple):
    """An image reference in one spelling: `docker.io/library/nginx`, tag, digest."""

    name: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = self.name + (f":{self.tag}" if self.tag else "")
        return text + (f"@{self.digest}" if self.digest else "")

    def matches(self, other: ImageRef) -> bool:
        """Same repository, and the same digest when both have one, else the same tag
        (a reference with a digest and no tag matches only by digest)."""
        if self.name != other.name:
            return False
        if self.digest and other.digest:
            return self.digest == other.digest
        return self.tag is not None and self.tag == other.tag


def parse_image(image: str) -> ImageRef:
    """Normalise as the container runtime does: registry `docker.io` when the first part
    is not a host, `library/` for single names, tag `latest` when neither tag nor digest."""
    text = image.strip()
    if "://" in text:  # an imageID such as docker-pullable://nginx@sha256:...
        text = text.split("://", 1)[1]
    rest, _, digest = text.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    tag = None
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first.lower(), remainder
    else:
        registry, path = "docker.io", rest
    if registry in _HUB_ALIASES:
        registry = "docker.io"
        if "/" not in path:
            path = f"library/{path}"
    if (
        not _PATH.fullmatch(path)
        or (tag is not None and not _TAG.fullmatch(tag))
        or (digest and not _DIGEST.fullmatch(digest))
    ):
        raise ActionPermanentError(f"not an image reference: {image!r}")
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(f"{registry}/{path}", tag, digest or None)
