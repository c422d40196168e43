"""Migrations: fresh databases, in-place upgrades that keep data, refusals, races, rollback."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import Connection, MetaData, inspect, select, text

from newsletter import clock
from newsletter.errors import StateError
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.state import Database, DeliveryOutcome, Ledger, open_database
from newsletter.state import subscribers as subs
from newsletter.state.migrations import MIGRATIONS, current_version, migrate
from newsletter.state.schema import metadata, schema_version

# A version-1 database as released (sqlite3 .dump): every later version must open it in place.
V1_DUMP = """
CREATE TABLE deliveries (
    id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    edition INTEGER NOT NULL,
    subscriber_id BIGINT NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    name TEXT DEFAULT '' NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    last_error TEXT DEFAULT '' NOT NULL,
    provider_id TEXT DEFAULT '' NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    CONSTRAINT uq_deliveries_edition_email_key UNIQUE (edition, email_key)
);
INSERT INTO "deliveries" VALUES(1,1,1,'Ada@Example.org','ada@example.org','Ada','sent',1,'','m1',
    '2024-05-01 12:00:00.000000','2024-05-01 12:00:00.000000');
INSERT INTO "deliveries" VALUES(2,1,2,'用户@例子.广告','用户@例子.广告','用户','pending',0,'','',
    '2024-05-01 12:00:00.000000','2024-05-01 12:00:00.000000');
CREATE TABLE edition_runs (
    edition INTEGER NOT NULL,
    sender TEXT DEFAULT '' NOT NULL,
    started_at DATETIME NOT NULL,
    finished_at DATETIME,
    PRIMARY KEY (edition)
);
INSERT INTO "edition_runs" VALUES(1,'outbox','2024-05-01 12:00:00.000000',NULL);
CREATE TABLE leases (
    name TEXT NOT NULL,
    holder TEXT NOT NULL,
    acquired_at DATETIME NOT NULL,
    expires_at DATETIME NOT NULL,
    PRIMARY KEY (name)
);
CREATE TABLE schema_version (
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at DATETIME NOT NULL,
    PRIMARY KEY (version)
);
INSERT INTO "schema_version" VALUES(1,'v1_initial','2024-05-01 12:00:00.000000');
CREATE TABLE subscribers (
    id INTEGER NOT NULL,
    email TEXT NOT NULL,
    email_key TEXT NOT NULL,
    name TEXT DEFAULT '' NOT NULL,
    tags TEXT DEFAULT '' NOT NULL,
    status VARCHAR(16) NOT NULL,
    source TEXT DEFAULT 'cli' NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uq_subscribers_email_key UNIQUE (email_key)
);
INSERT INTO "subscribers" VALUES(1,'Ada@Example.org','ada@example.org','Ada','ai','active','cli',
    '2024-05-01 12:00:00.000000','2024-05-01 12:00:00.000000');
INSERT INTO "subscribers" VALUES(2,'用户@例子.广告','用户@例子.广告','用户','','active','cli',
    '2024-05-01 12:00:00.000000','2024-05-01 12:00:00.000000');
INSERT INTO "subscribers" VALUES(3,'gone@example.org','gone@example.org','','','unsubscribed','cli',
    '2024-05-01 12:00:00.000000','2024-05-01 12:00:00.000000');
CREATE TABLE suppressions (
    email_key TEXT NOT NULL,
    reason TEXT DEFAULT '' NOT NULL,
    created_at DATETIME NOT NULL,
    PRIMARY KEY (email_key)
);
INSERT INTO "suppressions" VALUES('gone@example.org','unsubscribed',
    '2024-05-01 12:00:00.000000');
CREATE INDEX ix_subscribers_status_id ON subscribers (status, id);
CREATE INDEX ix_deliveries_edition_status_id ON deliveries (edition, status, id);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('deliveries',2);
"""


def _v2_add_locale(conn: Connection) -> None:
    """Add subscribers.locale (what a real second migration looks like)."""
    conn.execute(text("ALTER TABLE subscribers ADD COLUMN locale TEXT NOT NULL DEFAULT 'en'"))
    conn.execute(text("UPDATE subscribers SET locale = 'zh' WHERE email_key LIKE '%.广告'"))


def test_a_new_database_is_at_the_current_version(db: Database) -> None:
    with db.connect() as conn:
        assert current_version(conn) == len(MIGRATIONS) == 1
        rows = conn.execute(select(schema_version.c.version, schema_version.c.name)).all()
    assert [tuple(r) for r in rows] == [(1, "v1_initial")]
    assert migrate(db) == 1  # nothing to do, and says so


def test_migrations_build_exactly_the_tables_the_code_queries(db: Database) -> None:
    with db.connect() as conn:
        reflected = MetaData()
        reflected.reflect(conn)
        for table in metadata.sorted_tables:
            found = reflected.tables[table.name]
            assert [c.name for c in found.columns] == [c.name for c in table.columns], table.name
            assert [c.nullable for c in found.columns] == [c.nullable for c in table.columns]
            assert {i.name for i in found.indexes} == {i.name for i in table.indexes}
            unique = {u["name"] for u in inspect(conn).get_unique_constraints(table.name)}
            assert unique == {
                c.name for c in table.constraints if c.__class__.__name__ == "UniqueConstraint"
            }
        assert set(reflected.tables) == set(metadata.tables)


def test_v1_database_is_upgraded_in_place_keeping_data(db_url: str) -> None:
    with open_database(db_url) as db:
        subs.add(db, "Ada@Example.org", "Ada", ["ai"])
        subs.add(db, "用户@例子.广告", "用户")
        ledger = Ledger(db)
        ledger.enqueue(1)
        first = ledger.pending(1)[0]
        ledger.record(1, [DeliveryOutcome(first.id, DeliveryStatus.SENT)])
        assert migrate(db, (*MIGRATIONS, _v2_add_locale)) == 2
        with db.connect() as conn:
            assert current_version(conn) == 2
            rows = conn.execute(text("SELECT email, locale FROM subscribers ORDER BY id")).all()
            names = (
                conn.execute(select(schema_version.c.name).order_by(schema_version.c.version))
                .scalars()
                .all()
            )
        assert [tuple(r) for r in rows] == [("Ada@Example.org", "en"), ("用户@例子.广告", "zh")]
        assert names == ["v1_initial", "v2_add_locale"]
        # Everything written before the upgrade is still there and still works.
        assert subs.get(db, "ada@example.org") is not None
        summary = ledger.summary(1)
        assert (summary.sent, summary.pending) == (1, 1)
    # This code only knows version 1: a version-2 database must not be touched by it.
    with pytest.raises(StateError) as info:
        open_database(db_url)
    assert "has schema version 2, newer than this version of newsletter understands (1)" in (
        info.value.message
    )
    assert info.value.hint is not None and "upgrade newsletter" in info.value.hint


def test_released_v1_file_opens_and_keeps_working(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as raw:
        raw.executescript(V1_DUMP)
    raw.close()
    with open_database(f"sqlite:///{path}") as db:
        assert [s.email for s in subs.iter_subscribers(db)] == [
            "Ada@Example.org",
            "用户@例子.广告",
            "gone@example.org",
        ]
        assert subs.suppression(db, "gone@example.org") == "unsubscribed"
        ledger = Ledger(db)
        assert [p.email for p in ledger.pending(1)] == ["用户@例子.广告"]
        assert ledger.sent_editions()[1].sender == "outbox"
        assert ledger.enqueue(2) == 2
        assert migrate(db, (*MIGRATIONS, _v2_add_locale)) == 2
        assert subs.get(db, "用户@xn--fsqu00a.xn--4rr70v") is not None
        subs.set_status(db, "ada@example.org", SubscriberStatus.BOUNCED)
        assert subs.count(db)["bounced"] == 1


def test_a_failing_migration_changes_nothing(db_url: str) -> None:
    def _v2_broken(conn: Connection) -> None:
        conn.execute(text("CREATE TABLE half_done (x INTEGER)"))
        conn.execute(text("INSERT INTO half_done VALUES (1)"))
        raise RuntimeError("bug in migration 2")

    with open_database(db_url) as db:
        subs.add(db, "ada@example.org")
        with pytest.raises(RuntimeError, match="bug in migration 2"):
            migrate(db, (*MIGRATIONS, _v2_broken))
        with db.connect() as conn:
            assert current_version(conn) == 1
            assert not inspect(conn).has_table("half_done")
        assert subs.get(db, "ada@example.org") is not None


def test_racing_first_opens_migrate_once(db_url: str) -> None:
    opened: list[Database] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def race() -> None:
        try:
            barrier.wait()
            opened.append(open_database(db_url))
        except BaseException as exc:  # reported below, failing the test
            errors.append(exc)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        with opened[0].connect() as conn:
            versions = conn.execute(select(schema_version.c.version)).scalars().all()
        assert versions == [1]
    finally:
        for d in opened:
            d.close()


def test_schema_version_newer_than_code_is_refused(db_url: str) -> None:
    with open_database(db_url) as db, db.transaction() as conn:
        conn.execute(
            schema_version.insert().values(version=7, name="future", applied_at=clock.now())
        )
    with pytest.raises(StateError, match="has schema version 7, newer than"):
        open_database(db_url)
