"""The send ledger: enqueue, pending pages, outcomes, suppression, retries, concurrency."""

from __future__ import annotations

import threading

import pytest

from newsletter.clock import FixedClock
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.state import Database, DeliveryOutcome, Ledger, LedgerSummary
from newsletter.state import subscribers as subs

SENT, FAILED, PENDING = DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.PENDING


def populate(db: Database, n: int, *, tags: tuple[str, ...] = ()) -> list[str]:
    emails = [f"r{i:03d}@example.org" for i in range(n)]
    for email in emails:
        subs.add(db, email, email.split("@")[0].upper(), tags)
    return emails


def all_pending(ledger: Ledger, edition: int, limit: int = 1000) -> list[str]:
    out: list[str] = []
    after = 0
    while page := ledger.pending(edition, after_id=after, limit=limit):
        out += [p.email for p in page]
        after = page[-1].id
    return out


def test_enqueue_is_idempotent_and_takes_only_active_unsuppressed(db: Database) -> None:
    emails = populate(db, 5)
    subs.add(db, "wait@example.org", status=SubscriberStatus.PENDING)
    subs.set_status(db, emails[1], SubscriberStatus.UNSUBSCRIBED)
    ledger = Ledger(db)
    assert ledger.enqueue(7) == 4
    assert ledger.enqueue(7) == 0
    subs.add(db, "late@example.org")
    assert ledger.enqueue(7) == 1
    assert ledger.summary(7) == LedgerSummary(
        edition=7, total=5, sent=0, failed=0, pending=5, suppressed=0, failures=[]
    )
    assert all_pending(ledger, 7) == [emails[0], *emails[2:], "late@example.org"]
    assert ledger.enqueue(8) == 5  # another edition has its own rows


def test_a_suppression_alone_keeps_an_active_subscriber_out(db: Database) -> None:
    # E.g. a suppression list synced from the provider: written without touching subscribers.
    from newsletter import clock
    from newsletter.state.schema import suppressions

    populate(db, 3)
    with db.transaction() as conn:
        conn.execute(
            suppressions.insert().values(
                email_key="r001@example.org", reason="provider list", created_at=clock.now()
            )
        )
    ledger = Ledger(db)
    assert ledger.enqueue(1) == 2
    assert all_pending(ledger, 1) == ["r000@example.org", "r002@example.org"]
    assert ledger.summary(1).suppressed == 0  # never enqueued at all


def test_enqueue_with_tags_takes_subscribers_having_any(db: Database) -> None:
    subs.add(db, "ai@example.org", tags=["ai"])
    subs.add(db, "ml@example.org", tags=["ML", "stats"])
    subs.add(db, "both@example.org", tags=["ai", "ml"])
    subs.add(db, "none@example.org")
    subs.add(db, "tricky@example.org", tags=["mail"])  # contains "ai" but is not "ai"
    subs.add(db, "under@example.org", tags=["a_i"])
    ledger = Ledger(db)
    assert ledger.enqueue(1, tags=["AI"]) == 2
    assert sorted(all_pending(ledger, 1)) == ["ai@example.org", "both@example.org"]
    assert ledger.enqueue(2, tags=["ml", "ai"]) == 3
    assert ledger.enqueue(3, tags=["a%i"]) == 0  # LIKE wildcards are escaped


def test_pending_pages_by_id(db: Database) -> None:
    emails = populate(db, 7)
    ledger = Ledger(db)
    ledger.enqueue(1)
    first = ledger.pending(1, limit=3)
    assert [p.email for p in first] == emails[:3]
    assert (first[0].name, first[0].attempts) == ("R000", 0)
    assert first[0].subscriber_id == subs.get(db, emails[0]).id  # type: ignore[union-attr]
    assert [p.email for p in ledger.pending(1, after_id=first[-1].id, limit=3)] == emails[3:6]
    assert all_pending(ledger, 1, limit=2) == emails


def test_pending_marks_newly_suppressed_rows_and_never_returns_them(db: Database) -> None:
    emails = populate(db, 6)
    ledger = Ledger(db)
    ledger.enqueue(3)
    # After enqueue: two unsubscribe, one is removed, one bounces elsewhere.
    subs.set_status(db, emails[0], SubscriberStatus.UNSUBSCRIBED)
    subs.set_status(db, emails[1], SubscriberStatus.UNSUBSCRIBED)
    subs.remove(db, emails[2])
    subs.set_status(db, emails[4], SubscriberStatus.BOUNCED)
    # The first page (limit 2) is entirely suppressed: it must not look like the end.
    page = ledger.pending(3, limit=2)
    assert [p.email for p in page] == [emails[3]]
    assert all_pending(ledger, 3) == [emails[3], emails[5]]
    summary = ledger.summary(3)
    assert (summary.pending, summary.suppressed, summary.total) == (2, 4, 6)


def test_record_outcomes(db: Database, fixed_clock: FixedClock) -> None:
    emails = populate(db, 4)
    ledger = Ledger(db)
    ledger.enqueue(1)
    rows = ledger.pending(1)
    ledger.record(
        1,
        [
            DeliveryOutcome(rows[0].id, SENT, provider_id="msg-1"),
            DeliveryOutcome(rows[1].id, PENDING, error="421 try again later"),
            DeliveryOutcome(rows[2].id, FAILED, error="552 mailbox full"),
        ],
    )
    assert [p.email for p in ledger.pending(1)] == [emails[1], emails[3]]
    assert ledger.pending(1)[0].attempts == 1
    ledger.record(1, [DeliveryOutcome(rows[1].id, SENT), DeliveryOutcome(rows[3].id, SENT)])
    summary = ledger.summary(1)
    assert summary == LedgerSummary(
        edition=1,
        total=4,
        sent=3,
        failed=1,
        pending=0,
        suppressed=0,
        failures=[(emails[2], "552 mailbox full")],
    )
    assert summary.settled
    # A late duplicate outcome cannot un-send a row.
    ledger.record(1, [DeliveryOutcome(rows[0].id, FAILED, error="oops")])
    assert ledger.summary(1).sent == 3
    # Outcomes for another edition's ids change nothing.
    ledger.record(2, [DeliveryOutcome(rows[2].id, SENT)])
    assert ledger.summary(1).failed == 1
    from sqlalchemy import select

    from newsletter.state.schema import deliveries

    with db.connect() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == rows[1].id)).one()
    assert (row.status, row.attempts, row.last_error, row.provider_id) == ("sent", 2, "", "")
    assert row.updated_at == fixed_clock.at
    with db.connect() as conn:
        first = conn.execute(select(deliveries).where(deliveries.c.id == rows[0].id)).one()
    assert (first.attempts, first.provider_id) == (1, "msg-1")


def test_hard_bounce_and_complaint_suppress_the_address(db: Database) -> None:
    emails = populate(db, 3)
    ledger = Ledger(db)
    ledger.enqueue(1)
    rows = ledger.pending(1)
    ledger.record(
        1,
        [
            DeliveryOutcome(rows[0].id, FAILED, error="550 5.1.1 no such user", hard_bounce=True),
            DeliveryOutcome(rows[1].id, SENT, complained=True),
        ],
    )
    bounced, complained = subs.get(db, emails[0]), subs.get(db, emails[1])
    assert bounced is not None and bounced.status is SubscriberStatus.BOUNCED
    assert complained is not None and complained.status is SubscriberStatus.COMPLAINED
    assert subs.suppression(db, emails[0]) == "bounced in edition 1: 550 5.1.1 no such user"
    assert subs.suppression(db, emails[1]) == "complained in edition 1"
    assert ledger.enqueue(2) == 1  # only the third subscriber is mailed next time
    assert all_pending(ledger, 2) == [emails[2]]


def test_reset_failed_retries_them(db: Database) -> None:
    emails = populate(db, 3)
    ledger = Ledger(db)
    ledger.enqueue(1)
    rows = ledger.pending(1)
    ledger.record(
        1,
        [DeliveryOutcome(r.id, FAILED, error="timeout") for r in rows[:2]]
        + [DeliveryOutcome(rows[2].id, SENT)],
    )
    assert ledger.mark_finished(1)
    assert ledger.reset_failed(1) == 2
    assert ledger.reset_failed(1) == 0
    again = ledger.pending(1)
    assert [(p.email, p.attempts) for p in again] == [(emails[0], 0), (emails[1], 0)]
    assert not ledger.sent_editions()[1].finished  # pending rows again: not finished
    assert not ledger.mark_finished(1)


def test_summary_adds_up(db: Database) -> None:
    emails = populate(db, 10)
    ledger = Ledger(db)
    ledger.enqueue(4)
    rows = ledger.pending(4)
    outcomes = [DeliveryOutcome(r.id, SENT) for r in rows[:5]]
    outcomes += [
        DeliveryOutcome(rows[5].id, FAILED, error="b"),
        DeliveryOutcome(rows[6].id, FAILED, error="a"),
    ]
    ledger.record(4, outcomes)
    subs.set_status(db, emails[7], SubscriberStatus.UNSUBSCRIBED)
    ledger.pending(4)
    s = ledger.summary(4)
    assert (s.total, s.sent, s.failed, s.pending, s.suppressed) == (10, 5, 2, 2, 1)
    assert s.total == s.sent + s.failed + s.pending + s.suppressed
    assert s.failures == [(emails[5], "b"), (emails[6], "a")]
    assert ledger.summary(99) == LedgerSummary(99, 0, 0, 0, 0, 0, [])


def test_edition_runs_say_when_sending_started_and_finished(
    db: Database, fixed_clock: FixedClock
) -> None:
    populate(db, 2)
    ledger = Ledger(db)
    assert ledger.sent_editions() == {}
    start = fixed_clock.at
    ledger.mark_started(5, "smtp")
    ledger.enqueue(5)
    assert not ledger.mark_finished(5)
    fixed_clock.advance(minutes=3)
    ledger.mark_started(5, "smtp")  # a resumed run keeps the first start time
    ledger.record(5, [DeliveryOutcome(p.id, SENT) for p in ledger.pending(5)])
    assert ledger.mark_finished(5)
    run = ledger.sent_editions()[5]
    assert (run.sender, run.started_at, run.finished_at, run.finished) == (
        "smtp",
        start,
        fixed_clock.at,
        True,
    )
    fixed_clock.advance(minutes=1)
    assert ledger.mark_finished(5)
    assert ledger.sent_editions()[5].finished_at == start.replace(minute=3)


def test_concurrent_record_from_four_threads(db: Database) -> None:
    populate(db, 200)
    ledger = Ledger(db)
    ledger.enqueue(1)
    rows = ledger.pending(1)
    errors: list[BaseException] = []

    def worker(part: int) -> None:
        try:
            mine = rows[part::4]
            for start in range(0, len(mine), 5):  # group commits of 5, like the dispatcher
                ledger.record(
                    1,
                    [
                        DeliveryOutcome(r.id, SENT, provider_id=f"p{r.id}")
                        for r in mine[start : start + 5]
                    ],
                )
        except BaseException as exc:  # reported below, failing the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    summary = ledger.summary(1)
    assert (summary.sent, summary.pending, summary.total) == (200, 0, 200)
    from sqlalchemy import func, select

    from newsletter.state.schema import deliveries

    with db.connect() as conn:
        attempts = conn.execute(
            select(func.min(deliveries.c.attempts), func.max(deliveries.c.attempts))
        ).one()
    assert tuple(attempts) == (1, 1)


@pytest.mark.parametrize("status", ["bogus", ""])
def test_record_refuses_unknown_statuses(db: Database, status: str) -> None:
    populate(db, 1)
    ledger = Ledger(db)
    ledger.enqueue(1)
    row = ledger.pending(1)[0]
    with pytest.raises(ValueError):
        ledger.record(1, [DeliveryOutcome(row.id, status)])  # type: ignore[arg-type]
    assert ledger.summary(1).pending == 1


def test_hot_path_queries_use_key_lookups_on_sqlite(tmp_path: object) -> None:
    """pending() and record() run once per page/commit at a million rows: no scans allowed.

    Without ANALYZE statistics SQLite happily walks a whole index (status, edition) when a
    query offers it one; this pins the plans of the statements the dispatcher repeats.
    """
    import sqlite3
    from pathlib import Path

    from sqlalchemy import event

    from newsletter.state import open_database

    path = Path(str(tmp_path)) / "state.db"
    seen: list[tuple[str, object]] = []
    with open_database(f"sqlite:///{path}") as db:
        populate(db, 5)
        ledger = Ledger(db)
        ledger.enqueue(1)
        subs.set_status(db, "r001@example.org", SubscriberStatus.UNSUBSCRIBED)

        def grab(
            conn: object,
            cursor: object,
            statement: str,
            parameters: object,
            context: object,
            executemany: bool,
        ) -> None:
            seen.append((statement, parameters[0] if executemany else parameters))  # type: ignore[index]

        event.listen(db.engine, "before_cursor_execute", grab)
        rows = ledger.pending(1)
        ledger.record(
            1,
            [
                DeliveryOutcome(rows[0].id, FAILED, "550", hard_bounce=True),
                DeliveryOutcome(rows[1].id, SENT, complained=True),
                DeliveryOutcome(rows[2].id, SENT),
            ],
        )
        event.remove(db.engine, "before_cursor_execute", grab)
    allowed = (
        "USING INTEGER PRIMARY KEY",
        "USING INDEX sqlite_autoindex_subscribers_1",
        "USING COVERING INDEX sqlite_autoindex_suppressions_1",
        "ix_deliveries_edition_status_id (edition=? AND status=? AND id>?)",
    )
    with sqlite3.connect(path) as raw:
        plans = [
            (statement, row[3])
            for statement, params in seen
            if not statement.lstrip().upper().startswith(("INSERT", "BEGIN", "COMMIT"))
            for row in raw.execute("EXPLAIN QUERY PLAN " + statement, params)
        ]  # type: ignore[arg-type]
    raw.close()
    assert len(plans) >= 6
    bad = [(s.split()[0:4], p) for s, p in plans if not any(a in p for a in allowed)]
    assert bad == []
