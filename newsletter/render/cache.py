"""Render cache in the state directory: an edition is re-rendered only when its inputs change."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from newsletter import __version__
from newsletter.models import Edition, RenderedEdition


def edition_key(
    config_digest: str,
    templates_digest: str,
    edition: Edition,
    prev: Edition | None,
    next: Edition | None,
) -> str:
    """Hash of everything one edition's outputs depend on (content, templates, config, pager)."""
    h = hashlib.sha256()
    for part in (
        __version__,
        config_digest,
        templates_digest,
        edition.key,
        str(edition.number),
        edition.title,
        edition.subject,
        edition.preheader,
        edition.intro_html,
        edition.start.isoformat(),
        edition.end.isoformat(),
        edition.date.isoformat(),
        repr(edition.is_open),
        repr([(s.title, [i.digest for i in s.issues]) for s in edition.sections]),
    ):
        h.update(part.encode("utf-8") + b"\0")
    for neighbour in (prev, next):
        h.update(repr((neighbour.number, neighbour.title) if neighbour else None).encode())
    return h.hexdigest()


def index_key(config_digest: str, templates_digest: str, editions: Sequence[Edition]) -> str:
    """Hash of what the archive index shows: each edition's own fields, not its issues' text.

    Every Edition field but ``issues`` and ``sections`` goes in (a new field joins the key by
    itself), plus the issue count and tags the index also shows; so editing an issue's body
    leaves the index alone, while a new title, date or tag renders it again.
    """
    h = hashlib.sha256()
    for part in (__version__, config_digest, templates_digest):
        h.update(part.encode("utf-8") + b"\0")
    for edition in editions:
        own = [
            getattr(edition, f.name)
            for f in fields(edition)
            if f.name not in ("issues", "sections")
        ]
        h.update(repr((own, len(edition.issues), edition.tags)).encode("utf-8") + b"\0")
    return h.hexdigest()


# The rendered strings of an edition; the Edition itself is not stored but reattached on get(),
# since a matching key means the current Edition has the same content (and its current paths).
_PARTS = tuple(f.name for f in fields(RenderedEdition) if f.name != "edition")


class RenderCache:
    """One pickle per edition number holding (key, the rendered parts of the edition)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, number: int) -> Path:
        return self.dir / f"{number}.pickle"

    def get(self, edition: Edition, key: str) -> RenderedEdition | None:
        try:
            with open(self._path(edition.number), "rb") as fh:
                stored_key, parts = pickle.load(fh)
            if stored_key != key or not isinstance(parts, dict) or set(parts) != set(_PARTS):
                return None
            return RenderedEdition(edition=edition, **parts)
        except (
            OSError,
            pickle.PickleError,
            EOFError,
            ValueError,
            TypeError,
            AttributeError,
            ImportError,
        ):
            return None  # a missing or unreadable cache entry only costs a re-render

    def put(self, key: str, rendered: RenderedEdition) -> None:
        parts = {name: getattr(rendered, name) for name in _PARTS}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump((key, parts), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self._path(rendered.edition.number))
        except OSError:
            pass  # the cache is an optimisation: a read-only state dir must not fail a build
