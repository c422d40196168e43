"""One build at a time per output folder: an advisory lock that the kernel drops if we die."""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from newsletter.errors import PublishError


def lock_path(state_dir: Path, out: Path) -> Path:
    """The lock file of one output folder, kept in the state folder (already git-ignored)."""
    digest = hashlib.sha256(os.fsencode(out.resolve())).hexdigest()[:16]
    return state_dir / "locks" / f"build-{digest}.lock"


@contextmanager
def build_lock(
    state_dir: Path, out: Path, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the build lock of ``out``; wait (saying so once) while another build holds it.

    flock() rather than a lock file with a pid: it is released when the holder exits however it
    exits (SIGKILL included), so a crashed build never blocks the next one.
    """
    fd = _open_lock(lock_path(state_dir, out), out)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                on_wait(f"waiting for another build of {out} (pid {holder}) to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _open_lock(path: Path, out: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        pass  # a read-only state folder only costs a build its caches: lock beside out instead
    beside = out.parent / f".{out.name}.lock"
    try:
        return os.open(beside, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PublishError(f"{path}: cannot create the build lock: {exc.strerror or exc}") from exc
