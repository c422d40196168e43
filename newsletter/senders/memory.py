"""MemorySender: keeps every accepted message in a list, with scriptable failures, for tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Self

from newsletter.errors import ConfigError
from newsletter.senders.base import Message, Result, Sender, sent

FailHook = Callable[[Message], Result | None]


class MemorySender(Sender):
    """Accepts everything into ``.sent`` unless ``fail(msg)`` returns a Result (or raises).

    ``fail`` lets a test script outcomes per message, e.g. a transient error on the first
    attempt for one recipient or a ``PermanentSendError`` to stop the whole run::

        MemorySender(fail=lambda m: transient(m, "451 try later") if m.recipient == x else None)

    Safe to call from several threads; ``fail`` runs under no lock, so it may block.
    """

    name: ClassVar[str] = "memory"

    def __init__(self, fail: FailHook | None = None) -> None:
        self.fail = fail
        self._lock = threading.Lock()
        self._sent: list[Message] = []
        self._attempts = 0
        self.closed = False

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        unknown = sorted(k for k in options if not k.startswith("_"))
        if unknown:
            raise ConfigError("[sender.memory] takes no options; unknown: " + ", ".join(unknown))
        fail = kwargs.pop("fail", None)
        if kwargs:
            raise TypeError(f"MemorySender got unexpected arguments: {sorted(kwargs)}")
        return cls(fail=fail)

    def send(self, messages: Sequence[Message]) -> list[Result]:
        results: list[Result] = []
        for msg in messages:
            with self._lock:
                self._attempts += 1
            scripted = self.fail(msg) if self.fail is not None else None
            if scripted is not None:
                results.append(scripted)
                continue
            with self._lock:
                self._sent.append(msg)
                provider_id = f"memory-{len(self._sent)}"
            results.append(sent(msg, provider_id))
        return results

    @property
    def sent(self) -> list[Message]:
        """A snapshot of the accepted messages, in acceptance order."""
        with self._lock:
            return list(self._sent)

    @property
    def recipients(self) -> list[str]:
        return [m.recipient for m in self.sent]

    @property
    def attempts(self) -> int:
        """How many messages send() was asked to deliver, accepted or not."""
        with self._lock:
            return self._attempts

    def clear(self) -> None:
        with self._lock:
            self._sent.clear()
            self._attempts = 0

    def close(self) -> None:
        self.closed = True
