"""Render cache in the state directory: an edition is re-rendered only when its inputs change."""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path

from newsletter import __version__
from newsletter.models import Edition, RenderedEdition


def edition_key(config_digest: str, templates_digest: str, edition: Edition,
                prev: Edition | None, next: Edition | None) -> str:
    """Hash of everything one edition's outputs depend on (content, templates, config, pager)."""
    h = hashlib.sha256()
    for part in (__version__, config_digest, templates_digest, edition.key, str(edition.number),
                 edition.title, edition.subject, edition.preheader, edition.intro_html,
                 edition.start.isoformat(), edition.end.isoformat(), edition.date.isoformat(),
                 repr(edition.is_open), repr([(s.title, [i.digest for i in s.issues])
                                               for s in edition.sections])):
        h.update(part.encode("utf-8") + b"\0")
    for neighbour in (prev, next):
        h.update(repr((neighbour.number, neighbour.title) if neighbour else None).encode())
    return h.hexdigest()


class RenderCache:
    """One pickle per edition number holding (key, RenderedEdition)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _path(self, number: int) -> Path:
        return self.dir / f"{number}.pickle"

    def get(self, number: int, key: str) -> RenderedEdition | None:
        try:
            with open(self._path(number), "rb") as fh:
                stored_key, rendered = pickle.load(fh)
        except (OSError, pickle.PickleError, EOFError, ValueError, TypeError, AttributeError,
                ImportError):
            return None  # a missing or unreadable cache entry only costs a re-render
        return rendered if stored_key == key and isinstance(rendered, RenderedEdition) else None

    def put(self, number: int, key: str, rendered: RenderedEdition) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                pickle.dump((key, rendered), fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, self._path(number))
        except OSError:
            pass  # the cache is an optimisation: a read-only state dir must not fail a build
