"""MemorySender: records in order, scripts failures, survives many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Message, Outcome, Result, permanent, transient
from newsletter.senders.memory import MemorySender
from tests.senders import make_message


def test_accepts_in_order_with_provider_ids() -> None:
    sender = MemorySender()
    messages = [make_message(i) for i in range(3)]
    results = sender.send(messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_id for r in results] == ["memory-1", "memory-2", "memory-3"]
    assert sender.sent == messages
    assert sender.recipients == [
        "reader0@example.org",
        "reader1@example.org",
        "reader2@example.org",
    ]


def test_scripted_failures() -> None:
    seen: dict[str, int] = {}

    def fail(msg: Message) -> Result | None:
        seen[msg.recipient] = seen.get(msg.recipient, 0) + 1
        if msg.recipient == "reader1@example.org" and seen[msg.recipient] == 1:
            return transient(msg, "451 try later", retry_after=30)
        if msg.recipient == "reader2@example.org":
            return permanent(msg, "550 5.1.1 user unknown", hard_bounce=True)
        return None

    sender = MemorySender(fail=fail)
    first = sender.send([make_message(i) for i in range(3)])
    assert [r.outcome for r in first] == [Outcome.SENT, Outcome.TRANSIENT, Outcome.PERMANENT]
    assert first[1].retry_after == 30 and first[2].hard_bounce
    assert sender.recipients == ["reader0@example.org"]

    [retry] = sender.send([make_message(1)])
    assert retry.ok and sender.recipients == ["reader0@example.org", "reader1@example.org"]
    assert sender.attempts == 4


def test_a_raising_script_stops_the_run() -> None:
    def broken(msg: Message) -> Result | None:
        raise PermanentSendError("account suspended")

    with MemorySender(fail=broken) as sender, pytest.raises(PermanentSendError):
        sender.send([make_message(0)])
    assert sender.sent == [] and sender.closed


def test_thread_safe() -> None:
    sender = MemorySender()
    messages = [make_message(i) for i in range(2000)]
    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(lambda m: sender.send([m]), messages) for r in batch]

    assert len(sender.sent) == 2000 and sender.attempts == 2000
    assert len({r.provider_id for r in results}) == 2000
    assert sorted(sender.recipients) == sorted(m.recipient for m in messages)
    sender.clear()
    assert sender.sent == [] and sender.attempts == 0


def test_from_options() -> None:
    def never(msg: Message) -> Result | None:
        return None

    sender = sender_class("memory").from_options({"_root": "/x"}, {}, fail=never)
    assert isinstance(sender, MemorySender) and sender.fail is never
    with pytest.raises(ConfigError, match="fail_on"):
        MemorySender.from_options({"fail_on": "x"}, {})
