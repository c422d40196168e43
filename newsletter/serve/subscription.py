"""Double opt-in and unsubscribe decisions over the state database (no HTTP, no sending)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select

from newsletter import clock
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.state import subscribers
from newsletter.state.addresses import SubscriberError
from newsletter.state.db import Database
from newsletter.state.schema import subscribers as subscribers_table
from newsletter.tokens import Signer

CONFIRM_TTL_MINUTES = 7 * 24 * 60  # a confirmation link works for a week
_CLOCK_SKEW_MINUTES = 5  # a token "from the future" beyond this was not made by us


class Request(enum.Enum):
    """What POST /subscribe does for one address; the page shown is the same for all."""

    SEND = "send"  # new, pending or unsubscribed: mail a confirmation link
    ALREADY_ACTIVE = "active"  # nothing to do, and nothing revealed
    SUPPRESSED = "suppressed"  # bounced or complained: never mailed again


class Confirm(enum.Enum):
    CONFIRMED = "confirmed"
    ALREADY = "already"  # a second click: harmless
    EXPIRED = "expired"  # too old, or made before a later unsubscribe
    INVALID = "invalid"  # forged, tampered, wrong purpose or address, unknown subscriber


@dataclass(frozen=True, slots=True)
class Found:
    """The subscriber a genuine token belongs to."""

    id: int
    email: str
    status: SubscriberStatus
    updated_at: datetime


def minutes(at: datetime | None = None) -> int:
    """Minutes since the epoch: the stamp of a confirmation token."""
    return int((at or clock.now()).timestamp() // 60)


def may_resubscribe(reason: str | None) -> bool:
    """True unless the suppression records a bounce or complaint (those stay forever)."""
    return reason is None or reason.startswith(str(SubscriberStatus.UNSUBSCRIBED))


def request(db: Database, email: str, name: str = "") -> tuple[Request, Subscriber | None]:
    """Decide what a subscribe request does; add a PENDING subscriber for a new address.

    Raises SubscriberError for an invalid address or name (the form shows it).
    """
    existing = subscribers.get(db, email)
    reason = subscribers.suppression(db, email)
    if existing is None:
        if not may_resubscribe(reason):
            return Request.SUPPRESSED, None
        try:
            sub = subscribers.add(db, email, name, status=SubscriberStatus.PENDING, source="form")
        except SubscriberError:
            # Added concurrently by a second request: decide again on what is there now.
            existing = subscribers.get(db, email)
            if existing is None:
                raise
            return _decide(existing, reason), existing
        return Request.SEND, sub
    return _decide(existing, reason), existing


def _decide(sub: Subscriber, reason: str | None) -> Request:
    if sub.status is SubscriberStatus.ACTIVE:
        return Request.ALREADY_ACTIVE
    if sub.status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED) or not may_resubscribe(
        reason
    ):
        return Request.SUPPRESSED
    return Request.SEND  # pending or unsubscribed: re-activated only through the link


def confirm_token(signer: Signer, sub: Subscriber, at: datetime | None = None) -> str:
    return signer.make("confirm", sub.id, minutes(at), sub.email)


def find(db: Database, signer: Signer, token: str, purpose: str) -> Found | None:
    """The subscriber whose address completes the token's MAC for ``purpose``; else None.

    The subscriber id inside the token only says which address to check the MAC against,
    so a forged id, purpose or address fails the constant-time comparison.
    """
    data = signer.peek(token)
    if data is None or data.purpose != purpose:
        return None
    with db.connect() as conn:
        row: Row[Any] | None = conn.execute(
            select(subscribers_table).where(subscribers_table.c.id == data.subscriber_id)
        ).first()
    if row is None or signer.verify(token, purpose, row.email) is None:
        return None
    return Found(
        id=row.id, email=row.email, status=SubscriberStatus(row.status), updated_at=row.updated_at
    )


def confirm(db: Database, signer: Signer, token: str) -> tuple[Confirm, Found | None]:
    """Activate the subscriber a confirmation token names, once; later clicks are harmless."""
    found = find(db, signer, token, "confirm")
    data = signer.peek(token)
    if found is None or data is None:
        return Confirm.INVALID, None
    now = minutes()
    if data.stamp > now + _CLOCK_SKEW_MINUTES:
        return Confirm.INVALID, None
    if found.status is SubscriberStatus.ACTIVE:
        return Confirm.ALREADY, found
    if found.status in (SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED):
        return Confirm.INVALID, None
    # A link older than the last change (an unsubscribe after it was sent) must not undo that
    # change: only a link requested after unsubscribing may subscribe the address again.
    if now - data.stamp > CONFIRM_TTL_MINUTES or data.stamp < minutes(found.updated_at):
        return Confirm.EXPIRED, found
    if not may_resubscribe(subscribers.suppression(db, found.email)):
        return Confirm.INVALID, None
    subscribers.reactivate(db, found.email)
    return Confirm.CONFIRMED, found


def unsubscribe(db: Database, email: str, how: str) -> bool:
    """Unsubscribe ``email`` (idempotent); True if this call changed anything.

    Bounced and complained subscribers keep that status: it is the stronger fact.
    """
    sub = subscribers.get(db, email)
    if sub is None or sub.status in (
        SubscriberStatus.UNSUBSCRIBED,
        SubscriberStatus.BOUNCED,
        SubscriberStatus.COMPLAINED,
    ):
        return False
    subscribers.set_status(
        db, email, SubscriberStatus.UNSUBSCRIBED, reason=f"{SubscriberStatus.UNSUBSCRIBED}: {how}"
    )
    return True
