"""The subscriber list: add, change, suppress, read page by page; CSV import and export."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from sqlalchemy import Connection, Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from newsletter import clock
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.state.addresses import (
    SubscriberError,
    address_key,
    check_address,
    check_name,
    parse_tags,
)
from newsletter.state.csv_import import ImportReport, import_csv
from newsletter.state.db import Database
from newsletter.state.schema import subscribers, suppressions

__all__ = [
    "SUPPRESSING",
    "ImportReport",
    "SubscriberError",
    "add",
    "count",
    "export_csv",
    "get",
    "import_csv",
    "iter_rows",
    "iter_subscribers",
    "reactivate",
    "remove",
    "set_status",
    "suppression",
]

# Statuses that put the address on the suppression list: never mailed again.
SUPPRESSING = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)


def add(
    db: Database,
    email: str,
    name: str = "",
    tags: Iterable[str] = (),
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    source: str = "cli",
) -> Subscriber:
    """Add one subscriber; refuse duplicates and (unless ``status`` is PENDING) suppressed ones."""
    address = check_address(email)
    clean_name, clean_tags = check_name(name), parse_tags(tags)
    status = SubscriberStatus(status)
    now = clock.now()
    try:
        with db.transaction() as conn:
            row = conn.execute(
                select(subscribers.c.status).where(subscribers.c.email_key == address.key)
            ).first()
            if row is not None:
                raise SubscriberError(
                    f"{address.email} is already on the list (status {row.status})"
                )
            reason = _suppression(conn, address.key)
            if reason is not None and status is not SubscriberStatus.PENDING:
                raise _suppressed_error(address.email, reason)
            new_id = conn.execute(
                insert(subscribers)
                .values(
                    email=address.email,
                    email_key=address.key,
                    name=clean_name,
                    tags=",".join(clean_tags),
                    status=str(status),
                    source=source,
                    created_at=now,
                    updated_at=now,
                )
                .returning(subscribers.c.id)
            ).scalar_one()
    except IntegrityError:  # PostgreSQL: a concurrent add of the same address won the race
        raise SubscriberError(f"{address.email} is already on the list") from None
    return Subscriber(
        id=new_id, email=address.email, name=clean_name, tags=clean_tags, status=status
    )


def get(db: Database, email: str) -> Subscriber | None:
    """The subscriber with this address (any case), or None."""
    with db.connect() as conn:
        row = conn.execute(
            select(subscribers).where(subscribers.c.email_key == address_key(email))
        ).first()
    return None if row is None else _subscriber(row)


def remove(db: Database, email: str) -> bool:
    """Delete the subscriber; its suppression (if any) stays. True if a row was deleted."""
    with db.transaction() as conn:
        result = conn.execute(
            delete(subscribers).where(subscribers.c.email_key == address_key(email))
        )
    return result.rowcount > 0


def count(db: Database) -> dict[str, int]:
    """How many subscribers have each status (every status present, zeros included)."""
    counts = {str(s): 0 for s in SubscriberStatus}
    with db.connect() as conn:
        for status, n in conn.execute(
            select(subscribers.c.status, func.count()).group_by(subscribers.c.status)
        ):
            counts[status] = int(n)
    return counts


def set_status(
    db: Database, email: str, status: SubscriberStatus, reason: str = ""
) -> Subscriber | None:
    """Change a subscriber's status; unsubscribed/bounced/complained also suppress the address.

    The suppression is recorded even when the address is not on the list (a late bounce or
    complaint). Setting ACTIVE on a suppressed address is refused: see ``reactivate``.
    """
    address = check_address(email)
    status = SubscriberStatus(status)
    now = clock.now()
    with db.transaction() as conn:
        if status in SUPPRESSING:
            conn.execute(
                db.insert_ignore(suppressions).values(
                    email_key=address.key, reason=reason or str(status), created_at=now
                )
            )
        elif status is SubscriberStatus.ACTIVE:
            held = _suppression(conn, address.key)
            if held is not None:
                raise _suppressed_error(address.email, held)
        conn.execute(
            update(subscribers)
            .where(subscribers.c.email_key == address.key)
            .values(status=str(status), updated_at=now)
        )
        row = conn.execute(
            select(subscribers).where(subscribers.c.email_key == address.key)
        ).first()
    return None if row is None else _subscriber(row)


def reactivate(db: Database, email: str) -> Subscriber:
    """Lift the suppression and set ACTIVE: only after the person confirmed (double opt-in)."""
    address = check_address(email)
    with db.transaction() as conn:
        found = conn.execute(
            update(subscribers)
            .where(subscribers.c.email_key == address.key)
            .values(status=str(SubscriberStatus.ACTIVE), updated_at=clock.now())
        )
        if found.rowcount == 0:
            raise SubscriberError(
                f"{address.email} is not on the list",
                hint="add it (status pending) before confirming it",
            )
        conn.execute(delete(suppressions).where(suppressions.c.email_key == address.key))
        row = conn.execute(select(subscribers).where(subscribers.c.email_key == address.key)).one()
    return _subscriber(row)


def suppression(db: Database, email: str) -> str | None:
    """Why the address is suppressed, or None if it may be mailed."""
    with db.connect() as conn:
        return _suppression(conn, address_key(email))


def iter_subscribers(
    db: Database, status: SubscriberStatus | None = None, *, page: int = 1000
) -> Iterator[Subscriber]:
    """Every subscriber in id order, read page by page (memory stays flat at any list size)."""
    for row in iter_rows(db, status, page=page):
        yield _subscriber(row)


def iter_rows(
    db: Database, status: SubscriberStatus | None = None, *, page: int = 1000
) -> Iterator[Row[Any]]:
    """Raw subscriber rows by keyset pagination; each page is its own short read."""
    after = 0
    while True:
        query = select(subscribers).where(subscribers.c.id > after)
        if status is not None:
            query = query.where(subscribers.c.status == str(SubscriberStatus(status)))
        with db.connect() as conn:
            rows = conn.execute(query.order_by(subscribers.c.id).limit(page)).all()
        yield from rows  # outside the transaction: a slow consumer holds no connection
        if len(rows) < page:
            return
        after = rows[-1].id


def _subscriber(row: Row[Any]) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        tags=tuple(t for t in row.tags.split(",") if t),
        status=SubscriberStatus(row.status),
    )


def _suppression(conn: Connection, key: str) -> str | None:
    reason: str | None = conn.execute(
        select(suppressions.c.reason).where(suppressions.c.email_key == key)
    ).scalar()
    return reason


def _suppressed_error(email: str, reason: str) -> SubscriberError:
    return SubscriberError(
        f"{email} is suppressed ({reason}) and cannot be re-activated here",
        hint="only a confirmed opt-in may lift a suppression (reactivate)",
    )


EXPORT_COLUMNS = ("email", "name", "tags", "status", "source", "created_at")


def export_csv(db: Database, out: TextIO, status: SubscriberStatus | None = None) -> int:
    """Write subscribers as CSV (importable again); return how many rows were written."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    written = 0
    for row in iter_rows(db, status):
        writer.writerow(
            [
                row.email,
                row.name,
                row.tags.replace(",", ";"),
                row.status,
                row.source,
                row.created_at.isoformat(),
            ]
        )
        written += 1
    return written
