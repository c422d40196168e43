"""Helpers shared by the security tests: hostile inputs, a wire-recording sender, header checks."""

from __future__ import annotations

import email.policy
import re
from email.parser import BytesHeaderParser
from typing import Any

from newsletter.config import Config
from newsletter.deliver.ratelimit import VirtualTimer
from newsletter.deliver.send import SendReport, plan_send, send_edition
from newsletter.senders.base import Message, Result
from newsletter.senders.memory import MemorySender
from newsletter.state.db import Database
from tests.conftest import issue
from tests.reliability import SECRET

SEND_ENV = {"NEWSLETTER_SECRET": SECRET}
INJECTED = "Bcc: victim@example.org"
# Every character that ends a line somewhere: SMTP (CR, LF), Python's str.splitlines (VT, FF,
# NEL, LS, PS), and NUL, which C mail software may treat as the end of the string.
BREAKS = {
    "crlf": "\r\n",
    "lf": "\n",
    "cr": "\r",
    "nul": "\x00",
    "nel": "\x85",
    "ls": "\u2028",
    "ps": "\u2029",
    "vt": "\x0b",
    "ff": "\x0c",
}
YAML_ESCAPE = {
    "\r\n": "\\r\\n",
    "\n": "\\n",
    "\r": "\\r",
    "\x00": "\\0",
    "\x85": "\\N",
    "\u2028": "\\L",
    "\u2029": "\\P",
    "\x0b": "\\v",
    "\x0c": "\\f",
}
GOOD_ISSUE = issue("Good paper", "2024-04-09", "Fine.", url="https://arxiv.org/abs/1")


class WireSender(MemorySender):
    """A MemorySender that serializes every message first, as SMTP and the outbox do."""

    def __init__(self) -> None:
        super().__init__(fail=self._serialize)
        self.wire: list[bytes] = []

    def _serialize(self, msg: Message) -> Result | None:
        self.wire.append(msg.as_bytes())
        return None


def _send(config: Config, db: Database, sender: Any, **kw: Any) -> SendReport:
    plan = plan_send(config, 1, db=db)
    return send_edition(
        config, plan, db=db, sender=sender, environ=SEND_ENV, timer=VirtualTimer(), **kw
    )


def _headers(raw: bytes) -> list[tuple[str, str]]:
    """The header fields as a strict reader sees them on the wire: unfolded, not decoded."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
    return [(k, re.sub(r"\r\n[ \t]", " ", str(v))) for k, v in msg.items()]


EXPECTED_HEADERS = {
    "From",
    "Subject",
    "Date",
    "List-Id",
    "To",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
}


def _assert_clean_wire(raw: bytes, recipient: str) -> None:
    """The header block holds exactly our headers, once each, and one recipient."""
    names = [k for k, _ in _headers(raw)]
    assert sorted(names) == sorted(EXPECTED_HEADERS), names
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head.replace(b"\r\n", b"")
    assert all(line.startswith((b" ", b"\t")) or b":" in line for line in head.split(b"\r\n"))
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    to = dict(_headers(raw))["To"]
    assert to.endswith(f"<{recipient}>") or to == recipient, to
