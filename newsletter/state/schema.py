"""The current shape of the state tables, as SQLAlchemy Core objects the queries are built from.

Migrations (``migrations.py``) create and evolve these tables; a test compares the two, so a
change here without a matching migration fails the suite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC (SQLite: sortable text; PostgreSQL: timestamptz).

    Always UTC on the way in, so text comparisons on SQLite order correctly (lease expiry).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the state database; use clock.now()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def coerce_compared_value(self, op: Any, value: Any) -> TypeEngine[Any]:
        return self


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY; PostgreSQL gets
# a 64-bit identity so the ledger (editions × subscribers rows) never runs out of ids.
ID = BigInteger().with_variant(Integer, "sqlite")

metadata = MetaData()

subscribers = Table(
    "subscribers",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("email", Text, nullable=False),  # as given (the address mail goes to)
    Column("email_key", Text, nullable=False),  # normalized, lower-cased: the dedupe key
    Column("name", Text, nullable=False, server_default=""),
    Column("tags", Text, nullable=False, server_default=""),  # "ai,ml": lower-case, comma-joined
    Column("status", String(16), nullable=False),  # a SubscriberStatus value
    Column("source", Text, nullable=False, server_default="cli"),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    Index("ix_subscribers_status_id", "status", "id"),
)

# An address here is never mailed again, whatever an import says; only reactivate() lifts it.
suppressions = Table(
    "suppressions",
    metadata,
    Column("email_key", Text, primary_key=True),
    Column("reason", Text, nullable=False, server_default=""),
    Column("created_at", UTCDateTime, nullable=False),
)

# The send ledger: one row per (edition, recipient). subscriber_id is a snapshot, not a foreign
# key, so removing a subscriber never rewrites history.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("edition", Integer, nullable=False),
    Column("subscriber_id", BigInteger, nullable=False),
    Column("email", Text, nullable=False),
    Column("email_key", Text, nullable=False),
    Column("name", Text, nullable=False, server_default=""),
    Column("status", String(16), nullable=False),  # a DeliveryStatus value
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("provider_id", Text, nullable=False, server_default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("edition", "email_key", name="uq_deliveries_edition_email_key"),
    Index("ix_deliveries_edition_status_id", "edition", "status", "id"),
    sqlite_autoincrement=True,  # ids never reused: the dispatcher pages by id
)

# One row per edition the dispatcher has started: answers "was edition N sent, and when".
edition_runs = Table(
    "edition_runs",
    metadata,
    Column("edition", Integer, primary_key=True, autoincrement=False),
    Column("sender", Text, nullable=False, server_default=""),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),  # set once no row is pending
)

leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("applied_at", UTCDateTime, nullable=False),
)
