"""File watching for live reload: poll sizes and mtimes in a thread (no extra dependency)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

Signature = frozenset[tuple[str, int, int]]

INTERVAL = 0.3  # seconds between scans: a save shows up in the browser well within a second
SETTLE = 0.1  # editors save in several writes; wait for a scan that sees no further change
MAX_SETTLE_SCANS = 5


def _ignored(name: str) -> bool:
    # Editor droppings (.file.swp, .#file, file~, 4913) are not content: no reload for them.
    return name.startswith((".", "#")) or name.endswith(("~", ".swp", ".tmp")) or name == "4913"


def scan(paths: Iterable[Path]) -> Signature:
    """(path, size, mtime_ns) of every watched file; a missing path simply contributes nothing."""
    found: set[tuple[str, int, int]] = set()
    for path in paths:
        try:
            if path.is_file():
                st = path.stat()
                found.add((str(path), st.st_size, st.st_mtime_ns))
                continue
        except OSError:
            continue
        for top, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not _ignored(d)]
            for name in files:
                if _ignored(name):
                    continue
                full = os.path.join(top, name)
                try:
                    st = os.stat(full)
                except OSError:
                    continue  # deleted between listing and stat: the next scan sees it gone
                found.add((full, st.st_size, st.st_mtime_ns))
    return frozenset(found)


class Watcher:
    """Calls ``on_change`` once per burst of changes under ``paths()``, until stopped."""

    def __init__(
        self,
        paths: Callable[[], Iterable[Path]],
        on_change: Callable[[], None],
        *,
        interval: float = INTERVAL,
    ) -> None:
        self.paths = paths
        self.on_change = on_change
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="newsletter-preview-watcher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        seen = scan(self.paths())
        while not self._stop.wait(self.interval):
            current = scan(self.paths())
            if current == seen:
                continue
            for _ in range(MAX_SETTLE_SCANS):
                if self._stop.wait(SETTLE):
                    return
                again = scan(self.paths())
                if again == current:
                    break
                current = again
            seen = current
            self.on_change()
