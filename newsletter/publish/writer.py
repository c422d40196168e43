"""Atomic site writer: build a staging tree (hard-linking unchanged files), then swap it in."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import shutil
import tempfile
from pathlib import Path

from newsletter.errors import PublishError

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # linux/fs.h


class SiteWriter:
    """Writes a complete new output tree next to ``out`` and swaps it in only when all is well.

    A failed build (bad input, disk full, a crash) never touches the previous ``out``: the
    staging directory is removed (or cleaned up by the next run) and ``out`` stays as it was.
    Each writer has a staging directory of its own; the caller holds ``publish.lock.build_lock``
    so that leftovers of killed builds can be removed safely.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.staging = out.parent / f".{out.name}.staging"  # replaced by a unique one on enter
        self.old = out.parent / f".{out.name}.old"
        self.written = 0
        self.linked = 0

    def __enter__(self) -> SiteWriter:
        recover(self.out)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            for stale in self.out.parent.glob(f".{self.out.name}.staging*"):
                shutil.rmtree(stale)  # left by a killed build (we hold the build lock)
            self.staging = Path(
                tempfile.mkdtemp(prefix=f".{self.out.name}.staging-", dir=self.out.parent)
            )
            self.staging.chmod(0o755)  # mkdtemp's 0700 would hide the site from a web server
        except OSError as exc:
            raise _error(exc, self.staging) from exc
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def write(self, rel: str, data: bytes | str) -> None:
        path = self.staging / rel
        payload = data.encode("utf-8") if isinstance(data, str) else data
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Never write through a hard link: it would change the previous build's file too.
            path.unlink(missing_ok=True)
            with open(path, "wb") as fh:
                fh.write(payload)
                fh.flush()
                # The contents must be on disk before the swap publishes them: after a power
                # loss a renamed-in file must not come back empty.
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _error(exc, self.out / rel) from exc
        self.written += 1

    def reuse(self, rel: str) -> bool:
        """Hard-link an unchanged file from the previous output; False when it is not there."""
        src = self.out / rel
        dst = self.staging / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(src, dst)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise _error(exc, self.out / rel) from exc
            try:
                shutil.copy2(src, dst)
            except OSError as exc2:
                raise _error(exc2, self.out / rel) from exc2
        self.linked += 1
        return True

    def copy(self, src: Path, rel: str) -> None:
        dst = self.staging / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.unlink(missing_ok=True)  # see write(): never write through a hard link
            shutil.copy2(src, dst)
            _fsync_file(dst)
        except OSError as exc:
            raise _error(exc, self.out / rel) from exc
        self.written += 1

    def commit(self) -> None:
        """Swap the staging tree in, so that ``out`` is the old or the new tree at every instant.

        Where the kernel can exchange two paths atomically (Linux renameat2), a web server serving
        ``out`` never finds it missing; elsewhere two renames leave it absent for an instant.
        """
        try:
            _fsync_tree(self.staging)
            if self.out.exists() and _exchange(self.staging, self.out):
                shutil.rmtree(self.staging, ignore_errors=True)  # now the previous build
                _fsync_dir(self.out.parent)
                return
            if self.out.exists():
                os.rename(self.out, self.old)
            os.rename(self.staging, self.out)
            _fsync_dir(self.out.parent)
        except OSError as exc:
            recover(self.out)
            raise _error(exc, self.out) from exc
        shutil.rmtree(self.old, ignore_errors=True)


def recover(out: Path) -> None:
    """Finish or undo a swap that a crash interrupted, so ``out`` always holds a whole build."""
    old = out.parent / f".{out.name}.old"
    if old.exists():
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(old, out)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False  # e.g. a file system without exchange support: fall back to two renames
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync_file(path)  # a directory opens read-only like a file; fsync persists its entries


def _fsync_tree(root: Path) -> None:
    # Directory entries must reach the disk before the rename makes them visible.
    for dirpath, _dirs, _files in os.walk(root):
        _fsync_dir(Path(dirpath))


def _error(exc: OSError, path: Path) -> PublishError:
    reason = {
        errno.ENOSPC: "the disk is full",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EDQUOT: "the disk quota is exceeded",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return PublishError(
        f"{path}: cannot write: {reason}",
        hint="the previous output was left untouched; fix this and build again",
    )
