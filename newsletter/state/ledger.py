"""The send ledger: one row per (edition, recipient), checkpointed after the server accepts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, bindparam, exists, func, literal, or_, select, update

from newsletter import clock
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.state.addresses import parse_tags
from newsletter.state.db import Database
from newsletter.state.schema import (
    UTCDateTime,
    deliveries,
    edition_runs,
    subscribers,
    suppressions,
)

_PENDING, _SENT, _FAILED, _SUPPRESSED = (str(s) for s in DeliveryStatus)
_ACTIVE = str(SubscriberStatus.ACTIVE)
MAX_ERROR = 2000  # characters of a provider's error message worth keeping
_IN_CHUNK = 900  # bound parameters per IN (…): under SQLite's oldest limit of 999


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """A message still to send: the row id is what ``record`` is told about."""

    id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What happened to one row. PENDING with an error is a transient failure (retried)."""

    id: int
    status: DeliveryStatus
    error: str = ""
    provider_id: str = ""
    hard_bounce: bool = False  # the address does not exist: suppress it for good
    complained: bool = False  # marked as spam: suppress it for good


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    """Counts for one edition; ``failures`` is (email, last_error) per failed row, sorted."""

    edition: int
    total: int
    sent: int
    failed: int
    pending: int
    suppressed: int
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        """Every row reached a final state (nothing pending)."""
        return self.pending == 0


@dataclass(frozen=True, slots=True)
class EditionRun:
    """When sending an edition started and, once nothing was pending, finished."""

    edition: int
    sender: str
    started_at: datetime
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


# Built once: the dispatcher records after every message, and constructing the statement (and
# its cache key) per call cost more CPU than the UPDATE itself (bench case 4, yappi profile).
_RECORD = (
    update(deliveries)
    .where(
        deliveries.c.id == bindparam("b_id"),
        deliveries.c.edition == bindparam("b_edition"),
        deliveries.c.status != _SENT,
    )
    .values(
        status=bindparam("b_status"),
        attempts=deliveries.c.attempts + 1,
        last_error=bindparam("b_error"),
        updated_at=bindparam("b_now"),
        provider_id=func.coalesce(
            func.nullif(bindparam("b_provider"), ""), deliveries.c.provider_id
        ),
    )
)


class Ledger:
    """The per-recipient send ledger over a Database; safe to share between threads."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, edition: int, *, tags: Sequence[str] = ()) -> int:
        """Add a pending row for every active, unsuppressed subscriber (with any of ``tags``)
        that has none for this edition yet; return how many were added. Idempotent."""
        now = clock.now()
        s = subscribers
        query = select(
            s.c.id,
            literal(edition),
            s.c.email,
            s.c.email_key,
            s.c.name,
            literal(_PENDING),
            literal(now, UTCDateTime()),
            literal(now, UTCDateTime()),
        ).where(
            s.c.status == _ACTIVE,
            ~exists().where(suppressions.c.email_key == s.c.email_key),
            # Skipping existing rows here (not only ON CONFLICT) keeps a re-run cheap and
            # keeps it from burning a million ids from the sequence.
            ~exists().where(
                deliveries.c.edition == edition, deliveries.c.email_key == s.c.email_key
            ),
        )
        wanted = parse_tags(tags)
        if wanted:
            padded = literal(",") + s.c.tags + literal(",")  # ",a,b," matches "%,a,%"
            query = query.where(
                or_(*(padded.like(f"%,{_escape_like(t)},%", escape="\\") for t in wanted))
            )
        # One INSERT … SELECT: the database does the work, even for a million subscribers.
        stmt = (
            self.db.insert_ignore(deliveries)
            .from_select(
                [
                    "subscriber_id",
                    "edition",
                    "email",
                    "email_key",
                    "name",
                    "status",
                    "created_at",
                    "updated_at",
                ],
                query.order_by(s.c.id),
            )
            .execution_options(preserve_rowcount=True)
        )  # SQLAlchemy keeps it for UPDATE only
        with self.db.transaction() as conn:
            added = conn.execute(stmt).rowcount
            self._ensure_run(conn, edition, now)
            if added:
                self._unfinish(conn, edition)
        return int(added)

    def pending(
        self, edition: int, *, after_id: int = 0, limit: int = 1000
    ) -> list[PendingDelivery]:
        """The next pending rows after ``after_id`` in id order; empty means none are left.

        Rows whose address was suppressed (or is no longer an active subscriber) since they
        were enqueued are marked 'suppressed' on the way, so they are never mailed.
        """
        d = deliveries
        while True:
            query = (
                select(d.c.id, d.c.subscriber_id, d.c.email, d.c.email_key, d.c.name, d.c.attempts)
                .where(d.c.edition == edition, d.c.status == _PENDING, d.c.id > after_id)
                .order_by(d.c.id)
                .limit(limit)
            )
            with self.db.connect() as conn:
                rows = conn.execute(query).all()
                mailable = _mailable(self.db, conn, [r.email_key for r in rows])
            stopped = [r.id for r in rows if r.email_key not in mailable]
            if stopped:
                self._suppress_rows(stopped)
            found = [
                PendingDelivery(
                    id=r.id,
                    subscriber_id=r.subscriber_id,
                    email=r.email,
                    name=r.name,
                    attempts=r.attempts,
                )
                for r in rows
                if r.email_key in mailable
            ]
            # A page that was all suppressed must not look like the end of the queue.
            if found or len(rows) < limit:
                return found
            after_id = rows[-1].id

    def _suppress_rows(self, ids: list[int]) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id.in_(ids), deliveries.c.status == _PENDING)
                .values(
                    status=_SUPPRESSED,
                    updated_at=clock.now(),
                    last_error="not mailed: suppressed or no longer active",
                )
            )

    def record(self, edition: int, outcomes: Sequence[DeliveryOutcome]) -> None:
        """Store outcomes in ONE transaction (the dispatcher's group commit); durable on return.

        Each row's attempts grow by one. A row already 'sent' stays sent (a late duplicate
        outcome cannot un-send it). Hard bounces and complaints also suppress the address.
        """
        if not outcomes:
            return
        now = clock.now()
        params = [
            {
                "b_id": o.id,
                "b_edition": edition,
                "b_now": now,
                "b_status": str(DeliveryStatus(o.status)),
                "b_error": o.error[:MAX_ERROR],
                "b_provider": o.provider_id,
            }
            for o in outcomes
        ]
        with self.db.transaction() as conn:
            conn.execute(_RECORD, params)
            lost = [o for o in outcomes if o.hard_bounce or o.complained]
            if lost:
                self._suppress_addresses(conn, edition, lost, now)

    def _suppress_addresses(
        self, conn: Connection, edition: int, lost: Sequence[DeliveryOutcome], now: datetime
    ) -> None:
        ids = [o.id for o in lost]
        # By primary key only (edition checked here): without statistics a planner may prefer
        # the (edition, …) index and walk every row of the edition.
        keys = {
            row.id: row.email_key
            for row in conn.execute(
                select(deliveries.c.id, deliveries.c.edition, deliveries.c.email_key).where(
                    deliveries.c.id.in_(ids)
                )
            )
            if row.edition == edition
        }
        for o in lost:
            key = keys.get(o.id)
            if key is None:
                continue
            status = SubscriberStatus.COMPLAINED if o.complained else SubscriberStatus.BOUNCED
            reason = f"{status} in edition {edition}" + (f": {o.error[:200]}" if o.error else "")
            conn.execute(
                self.db.insert_ignore(suppressions).values(
                    email_key=key, reason=reason, created_at=now
                )
            )
            change = update(subscribers).where(subscribers.c.email_key == key)
            if status is SubscriberStatus.BOUNCED:  # a complaint is the stronger fact: keep it
                change = change.where(subscribers.c.status != str(SubscriberStatus.COMPLAINED))
            conn.execute(change.values(status=str(status), updated_at=now))

    def reset_failed(self, edition: int) -> int:
        """Turn failed rows back into pending ones (``send --retry-failed``); return how many.

        Attempts restart at zero: the user asked for a fresh try, and the dispatcher's
        max-attempts rule would otherwise fail them again at once.
        """
        with self.db.transaction() as conn:
            n = conn.execute(
                update(deliveries)
                .where(deliveries.c.edition == edition, deliveries.c.status == _FAILED)
                .values(status=_PENDING, attempts=0, updated_at=clock.now())
            ).rowcount
            if n:
                self._unfinish(conn, edition)
        return int(n)

    def summary(self, edition: int) -> LedgerSummary:
        """Counts by status plus every failure, read in one transaction so they add up."""
        d = deliveries
        with self.db.connect() as conn:
            counts = {
                status: int(n)
                for status, n in conn.execute(
                    select(d.c.status, func.count())
                    .where(d.c.edition == edition)
                    .group_by(d.c.status)
                )
            }
            failures = [
                (email, error)
                for email, error in conn.execute(
                    select(d.c.email, d.c.last_error)
                    .where(d.c.edition == edition, d.c.status == _FAILED)
                    .order_by(d.c.email, d.c.last_error)
                )
            ]
        return LedgerSummary(
            edition=edition,
            total=sum(counts.values()),
            sent=counts.get(_SENT, 0),
            failed=counts.get(_FAILED, 0),
            pending=counts.get(_PENDING, 0),
            suppressed=counts.get(_SUPPRESSED, 0),
            failures=failures,
        )

    def sent_since(self, since: datetime) -> int:
        """Messages recorded as sent (any edition) at or after ``since``: for hourly/daily caps."""
        d = deliveries
        with self.db.connect() as conn:
            n = conn.execute(
                select(func.count()).where(d.c.status == _SENT, d.c.updated_at >= since)
            ).scalar_one()
        return int(n)

    def mark_started(self, edition: int, sender: str) -> None:
        """Note that sending ``edition`` began (kept from the first start) and with which sender."""
        with self.db.transaction() as conn:
            self._ensure_run(conn, edition, clock.now())
            conn.execute(
                update(edition_runs).where(edition_runs.c.edition == edition).values(sender=sender)
            )

    def mark_finished(self, edition: int) -> bool:
        """Record the finish time if no row is pending; return whether the edition is finished."""
        now = clock.now()
        with self.db.transaction() as conn:
            waiting = conn.execute(
                select(
                    exists().where(deliveries.c.edition == edition, deliveries.c.status == _PENDING)
                )
            ).scalar()
            if waiting:
                return False
            self._ensure_run(conn, edition, now)
            conn.execute(
                update(edition_runs)
                .where(edition_runs.c.edition == edition, edition_runs.c.finished_at.is_(None))
                .values(finished_at=now)
            )
        return True

    def sent_editions(self) -> dict[int, EditionRun]:
        """Every edition whose sending started; ``.finished`` says all its rows are settled."""
        with self.db.connect() as conn:
            rows = conn.execute(select(edition_runs).order_by(edition_runs.c.edition)).all()
        return {
            r.edition: EditionRun(
                edition=r.edition,
                sender=r.sender,
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
            for r in rows
        }

    def _ensure_run(self, conn: Connection, edition: int, now: datetime) -> None:
        conn.execute(
            self.db.insert_ignore(edition_runs).values(
                edition=edition, sender="", started_at=now, finished_at=None
            )
        )

    @staticmethod
    def _unfinish(conn: Connection, edition: int) -> None:
        conn.execute(
            update(edition_runs).where(edition_runs.c.edition == edition).values(finished_at=None)
        )


def _mailable(db: Database, conn: Connection, keys: list[str]) -> set[str]:
    """The keys that still belong to an active subscriber and are not suppressed.

    Looked up by primary/unique key in bounded chunks rather than joined into the page query:
    a join lets the planner pick a full scan of a million subscribers for every page.
    """
    found: set[str] = set()
    for start in range(0, len(keys), _IN_CHUNK):
        chunk = keys[start : start + _IN_CHUNK]
        # Status is filtered here, not in SQL: on fresh tables without statistics PostgreSQL
        # would otherwise scan the status index (every active row) instead of the key index.
        active = {
            row.email_key
            for row in conn.execute(
                select(subscribers.c.email_key, subscribers.c.status).where(
                    db.any_of(subscribers.c.email_key, chunk)
                )
            )
            if row.status == _ACTIVE
        }
        held = set(
            conn.execute(
                select(suppressions.c.email_key).where(db.any_of(suppressions.c.email_key, chunk))
            ).scalars()
        )
        found |= active - held
    return found


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
