"""OutboxSender, the default: writes each message into a local Maildir any mail client can open."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from newsletter.errors import ConfigError, PermanentSendError, Problem, located
from newsletter.senders.base import Message, Result, Sender, sent, transient

# Errors that mean the outbox as a whole cannot take mail: stop the run instead of failing
# every recipient one by one (and burning their retry budgets).
_FATAL_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR}
)
_OPTIONS = ("path", "discard", "fsync")
DISCARD_PATH = "/dev/null"


def maildir_name(message_id: str) -> str:
    """The file name in new/ for a message: the same Message-ID always maps to the same file."""
    return hashlib.sha256(message_id.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".eml"


class OutboxSender(Sender):
    """Delivers into ``<path>/{tmp,new,cur}`` (a Maildir); ``path=None`` only counts messages.

    Each message is written to tmp/, fsynced, then renamed into new/, so a reader never sees
    a partial file and a resend of the same Message-ID replaces the earlier copy.
    """

    name: ClassVar[str] = "outbox"

    def __init__(self, path: str | os.PathLike[str] | None, *, fsync: bool = True) -> None:
        self.path = None if path is None or os.fspath(path) == DISCARD_PATH else Path(path)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._ready = False
        self.count = 0  # messages accepted (written or discarded)
        self.bytes = 0  # their total size

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        if kwargs:
            raise TypeError(f"OutboxSender got unexpected arguments: {sorted(kwargs)}")
        problems: list[Problem] = []

        def problem(key: str, message: str) -> None:
            problems.append(Problem("config.toml", None, f"[sender.outbox] {key}: {message}"))

        for key in sorted(options):
            if not key.startswith("_") and key not in _OPTIONS:
                problem(key, "unknown option (known: " + ", ".join(_OPTIONS) + ")")
        path = options.get("path", "outbox")
        if not isinstance(path, str) or not path:
            problem("path", 'must be a directory path (or "/dev/null" to discard)')
            path = "outbox"
        for key in ("discard", "fsync"):
            if not isinstance(options.get(key, False), bool):
                problem(key, "must be true or false")
        if problems:
            raise located(problems, "[sender.outbox]", ConfigError)
        if options.get("discard", False) or path == DISCARD_PATH:
            return cls(None)
        root = Path(str(options.get("_root", ".")))
        return cls(root / path, fsync=bool(options.get("fsync", True)))

    @property
    def discarding(self) -> bool:
        return self.path is None

    def send(self, messages: Sequence[Message]) -> list[Result]:
        return [self._deliver(msg) for msg in messages]

    def _deliver(self, msg: Message) -> Result:
        data = msg.as_bytes()  # built even when discarding: a dry run measures the real work
        if self.path is None:
            self._count(len(data))
            return sent(msg)
        self._ensure_maildir(self.path)
        name = maildir_name(msg.message_id)
        # Unique per thread so two threads resending one Message-ID never share a tmp file.
        tmp = self.path / "tmp" / f"{name}.{os.getpid()}.{threading.get_ident()}"
        final = self.path / "new" / name
        try:
            self._write(tmp, data)
            os.rename(tmp, final)  # atomic: readers see the old file or the whole new one
            if self.fsync:
                _fsync_dir(final.parent)
        except OSError as exc:
            _unlink_quietly(tmp)
            if exc.errno in _FATAL_ERRNOS:
                raise PermanentSendError(
                    f"cannot write to the outbox {self.path}: {exc.strerror or exc}",
                    hint="free disk space or fix the permissions of [sender.outbox] path",
                ) from exc
            return transient(msg, f"writing {final} failed: {exc}")
        self._count(len(data))
        return sent(msg, provider_id=name)

    def _write(self, tmp: Path, data: bytes) -> None:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _ensure_maildir(self, path: Path) -> None:
        if self._ready:
            return
        with self._lock:
            try:
                for sub in ("tmp", "new", "cur"):
                    (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise PermanentSendError(
                    f"cannot create the outbox {path}: {exc.strerror or exc}",
                    hint="check [sender.outbox] path",
                ) from exc
            self._ready = True

    def _count(self, size: int) -> None:
        with self._lock:
            self.count += 1
            self.bytes += size


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable, not only the file's bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):  # the original error is the one worth reporting
        path.unlink(missing_ok=True)
