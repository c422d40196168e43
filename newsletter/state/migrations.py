"""Ordered schema migrations, applied in one transaction when the state database is opened.

To change the schema, append one function to MIGRATIONS (never edit a released one) and update
the tables in ``schema.py`` to match. Each step gets the open transaction's connection and must
keep existing data: databases are upgraded in place, never deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    inspect,
    select,
    text,
)

from newsletter import clock
from newsletter.errors import StateError
from newsletter.state.db import Database
from newsletter.state.schema import ID, UTCDateTime, schema_version

Migration = Callable[[Connection], None]

# Any fixed number: serializes concurrent migrations on one PostgreSQL database.
_PG_LOCK_KEY = 0x6E65_7773  # "news"


def _v1_initial(conn: Connection) -> None:
    """Create subscribers, suppressions, deliveries, edition_runs and leases."""
    # Frozen copy of the version-1 tables: later migrations alter them; this must not change.
    md = MetaData()
    Table(
        "subscribers",
        md,
        Column("id", ID, primary_key=True, autoincrement=True),
        Column("email", Text, nullable=False),
        Column("email_key", Text, nullable=False),
        Column("name", Text, nullable=False, server_default=""),
        Column("tags", Text, nullable=False, server_default=""),
        Column("status", String(16), nullable=False),
        Column("source", Text, nullable=False, server_default="cli"),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("email_key", name="uq_subscribers_email_key"),
        Index("ix_subscribers_status_id", "status", "id"),
    )
    Table(
        "suppressions",
        md,
        Column("email_key", Text, primary_key=True),
        Column("reason", Text, nullable=False, server_default=""),
        Column("created_at", UTCDateTime, nullable=False),
    )
    Table(
        "deliveries",
        md,
        Column("id", ID, primary_key=True, autoincrement=True),
        Column("edition", Integer, nullable=False),
        Column("subscriber_id", BigInteger, nullable=False),
        Column("email", Text, nullable=False),
        Column("email_key", Text, nullable=False),
        Column("name", Text, nullable=False, server_default=""),
        Column("status", String(16), nullable=False),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=False, server_default=""),
        Column("provider_id", Text, nullable=False, server_default=""),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("edition", "email_key", name="uq_deliveries_edition_email_key"),
        Index("ix_deliveries_edition_status_id", "edition", "status", "id"),
        sqlite_autoincrement=True,
    )  # ids never reused: the dispatcher pages by id
    Table(
        "edition_runs",
        md,
        Column("edition", Integer, primary_key=True, autoincrement=False),
        Column("sender", Text, nullable=False, server_default=""),
        Column("started_at", UTCDateTime, nullable=False),
        Column("finished_at", UTCDateTime, nullable=True),
    )
    Table(
        "leases",
        md,
        Column("name", Text, primary_key=True),
        Column("holder", Text, nullable=False),
        Column("acquired_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: tuple[Migration, ...] = (_v1_initial,)


def current_version(conn: Connection) -> int:
    """The highest migration applied (0 for an empty database)."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(select(func.max(schema_version.c.version))).scalar() or 0)


def migrate(db: Database, steps: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply every pending step in one transaction; return the resulting version."""
    target = len(steps)
    with db.connect() as conn:
        version = current_version(conn)
    _refuse_newer(db, version, target)
    if version == target:  # the common case takes no write lock
        return version
    with db.transaction() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        version = current_version(conn)  # another process may have migrated meanwhile
        _refuse_newer(db, version, target)
        schema_version.create(conn, checkfirst=True)
        for number in range(version + 1, target + 1):
            step = steps[number - 1]
            step(conn)
            conn.execute(
                insert(schema_version).values(
                    version=number, name=step.__name__.lstrip("_"), applied_at=clock.now()
                )
            )
    return target


def _refuse_newer(db: Database, version: int, target: int) -> None:
    if version > target:
        raise StateError(
            f"the state database {db.where} has schema version {version}, newer than this "
            f"version of newsletter understands ({target})",
            hint="upgrade newsletter (pip install -U newsletter); a newer version wrote it",
        )
