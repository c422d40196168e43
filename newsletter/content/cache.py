"""The parsed-issue cache: unchanged files are trusted by size and mtime, changed ones by digest."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
import time
from collections.abc import Collection
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from newsletter.models import Issue

if TYPE_CHECKING:
    from newsletter.config import Config

log = logging.getLogger(__name__)

# Bump when the entry layout changes; Issue's field names are part of the salt too, so a model
# change invalidates old caches even if nobody remembers to bump this.
FORMAT = 1
# File systems with coarse timestamps (ext4 ticks in jiffies, FAT in 2 s) can give an edited file
# the same mtime as the version we cached. Entries for files modified this recently before we
# looked are "racy": their contents are re-hashed next time instead of trusted (as git does).
RACY_NS = 2_000_000_000


class Entry(NamedTuple):
    """What is remembered about one issue file."""

    size: int
    mtime_ns: int
    digest: str
    issue: Issue
    racy: bool


class IssueCache:
    """A pickle of ``project path → (size, mtime_ns, digest, Issue)``, loaded once per run.

    The pickle lives in the project's own state directory, written only by this code, so it is
    as trusted as the project itself. Anything unreadable about it just means a cold cache.
    """

    def __init__(self, path: Path, salt: str) -> None:
        self.path = path
        self.salt = salt
        self._entries: dict[str, Entry] | None = None
        self.dirty = False

    @classmethod
    def for_config(cls, config: Config) -> IssueCache:
        """The cache for a project: ``<state_dir>/cache/issues.pickle``, salted by the config."""
        from newsletter import __version__

        shape = ",".join(f.name for f in fields(Issue))
        salt = f"{FORMAT}:{__version__}:{config.digest}:{shape}"
        return cls(config.state_dir / "cache" / "issues.pickle", salt)

    @property
    def entries(self) -> dict[str, Entry]:
        """The cached entries, read from disk on first use."""
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def _load(self) -> dict[str, Entry]:
        try:
            with self.path.open("rb") as fh:
                data = pickle.load(fh)
        except FileNotFoundError:
            return {}
        except Exception as exc:  # any damage (truncation, old classes): rebuild, never fail
            log.info("ignoring unreadable issue cache %s: %s", self.path, exc)
            return {}
        if (
            not isinstance(data, dict)
            or data.get("salt") != self.salt
            or not isinstance(data.get("entries"), dict)
        ):
            return {}
        entries: dict[str, Entry] = data["entries"]
        return entries

    def by_stat(self, key: str, size: int, mtime_ns: int) -> Issue | None:
        """The cached Issue if the file's size and mtime are unchanged (and were not racy)."""
        entry = self.entries.get(key)
        if entry is None or entry.racy or entry.size != size or entry.mtime_ns != mtime_ns:
            return None
        return entry.issue

    def by_digest(self, key: str, digest: str) -> Issue | None:
        """The cached Issue if the file's contents are unchanged (touched, or racy before)."""
        entry = self.entries.get(key)
        return entry.issue if entry is not None and entry.digest == digest else None

    def put(self, key: str, size: int, mtime_ns: int, digest: str, issue: Issue) -> None:
        """Record a freshly read file; ``mtime_ns`` must come from a stat taken before reading."""
        racy = mtime_ns >= time.time_ns() - RACY_NS
        old = self.entries.get(key)
        if (
            old is not None
            and old[:3] == (size, mtime_ns, digest)
            and old.racy == racy
            and old.issue is issue
        ):
            return
        self.entries[key] = Entry(size, mtime_ns, digest, issue, racy)
        self.dirty = True

    def retain(self, keys: Collection[str]) -> None:
        """Forget files that no longer exist."""
        keep = set(keys)
        gone = [key for key in self.entries if key not in keep]
        for key in gone:
            del self.entries[key]
        self.dirty = self.dirty or bool(gone)

    def save(self) -> bool:
        """Write the cache atomically if anything changed; True if it was written."""
        if not self.dirty or self._entries is None:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
            )
        except OSError as exc:  # a read-only state dir costs speed next time, not the build
            log.warning("cannot write issue cache %s: %s", self.path, exc)
            return False
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(
                    {"salt": self.salt, "entries": self._entries},
                    fh,
                    protocol=pickle.HIGHEST_PROTOCOL,
                )
            os.replace(tmp, self.path)
        except (OSError, pickle.PicklingError, RecursionError) as exc:
            log.warning("cannot write issue cache %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return False
        self.dirty = False
        return True
