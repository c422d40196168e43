"""`newsletter unsubscribe --from-email`: act on one inbound message piped in by the MTA.

The List-Unsubscribe mailto link carries the signed token in the Subject ("unsubscribe
TOKEN"): that is proof enough. Without a genuine token the From address is unsubscribed, but
only if it is on the list. From can be forged, so anyone can unsubscribe anyone this way; the
harm is bounded (nobody is ever subscribed by mail, and a confirmed opt-in undoes it), and
many people answer "unsubscribe" by hand, which only this fallback serves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import BinaryIO

from newsletter.config import Config
from newsletter.models import SubscriberStatus
from newsletter.serve import subscription
from newsletter.state import subscribers
from newsletter.state.db import Database, open_database
from newsletter.tokens import TOKEN_LENGTH, Signer, load_secret

EX_TEMPFAIL = 75  # sysexits.h: the MTA keeps the message and tries again later
MAX_MESSAGE = 10 * 1024 * 1024
_TOKEN = re.compile(
    rf"\bunsubscribe\s+([A-Za-z0-9_-]{{{TOKEN_LENGTH}}})(?![A-Za-z0-9_-])", re.IGNORECASE
)
_AUTOMATIC = re.compile(r"^\s*(bulk|junk|list|auto[_-]reply)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MailOutcome:
    """What was done; ``unsubscribed`` is False when nothing matched (still exit 0)."""

    unsubscribed: bool
    message: str


def find_token(subject: str) -> str | None:
    """The token in "unsubscribe TOKEN" (also inside "Re: …" or with other words around)."""
    m = _TOKEN.search(subject)
    return m.group(1) if m else None


def _automatic(msg: EmailMessage) -> bool:
    """An auto-reply or bulk mail (RFC 3834 Auto-Submitted, Precedence): never a request."""
    auto = str(msg.get("Auto-Submitted", "no")).strip().lower()
    return auto not in ("", "no") or bool(_AUTOMATIC.match(str(msg.get("Precedence", ""))))


def process(db: Database, signer: Signer, raw: bytes) -> MailOutcome:
    """Unsubscribe by the Subject's token, else by the From address if it is subscribed."""
    msg = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    token = find_token(str(msg.get("Subject", "")))
    if token is not None:
        found = subscription.find(db, signer, token, "unsubscribe")
        if found is not None:
            changed = subscription.unsubscribe(db, found.email, "email (token)")
            return MailOutcome(
                True,
                f"subscriber {found.id}: "
                + ("unsubscribed" if changed else "already unsubscribed"),
            )
    if _automatic(msg):
        return MailOutcome(False, "automatic message (Auto-Submitted/Precedence): ignored")
    addresses = [addr for _, addr in getaddresses([str(msg.get("From", ""))]) if "@" in addr]
    if len(addresses) != 1:
        return MailOutcome(False, "no valid token and no single From address: nothing done")
    sub = subscribers.get(db, addresses[0])
    if sub is None or sub.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING):
        return MailOutcome(False, "no valid token, and the sender is not subscribed: nothing done")
    subscription.unsubscribe(db, sub.email, "email (From address)")
    return MailOutcome(True, f"subscriber {sub.id}: unsubscribed (From address)")


def run(config: Config, stream: BinaryIO, environ: Mapping[str, str] | None = None) -> MailOutcome:
    """Read one RFC 5322 message from ``stream`` (as an MTA pipe delivers it) and act on it."""
    raw = stream.read(MAX_MESSAGE + 1)
    if len(raw) > MAX_MESSAGE:
        return MailOutcome(False, "message larger than 10 MB: ignored")
    signer = Signer(
        load_secret(config.email.secret_env, os.environ if environ is None else environ)
    )
    db = open_database(config.database_url, busy_timeout=config.state.busy_timeout)
    try:
        return process(db, signer, raw)
    finally:
        db.close()
