"""A named, expiring lease in the state database: at most one live holder at a time.

Only the mechanism lives here; the scheduler's LeaseKeeper (schedule/firelog.py) says what a
refusal means to the user, so that message is written once.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from newsletter import clock
from newsletter.state.db import Database
from newsletter.state.schema import leases


def default_holder() -> str:
    """Who we are, for the lease table and error messages: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Lease:
    """Hold ``name`` for ``ttl_seconds`` at a time; renew before it runs out.

    A lease whose holder stopped renewing expires and is taken over by the next ``acquire``.
    Every step is a single atomic statement, so two schedulers racing (on SQLite or on
    PostgreSQL) cannot both win. Time comes from ``newsletter.clock`` (tests inject it).
    """

    def __init__(
        self, db: Database, name: str, holder: str | None = None, ttl_seconds: float = 300.0
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.db = db
        self.name = name
        self.holder = holder or default_holder()
        self.ttl = timedelta(seconds=ttl_seconds)

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or already ours; return whether we hold it."""
        now = clock.now()
        with self.db.transaction() as conn:
            # Take over an expired lease, or extend our own, in one conditional UPDATE.
            taken = conn.execute(
                update(leases)
                .where(
                    leases.c.name == self.name,
                    or_(leases.c.expires_at < now, leases.c.holder == self.holder),
                )
                .values(holder=self.holder, acquired_at=now, expires_at=now + self.ttl)
            )
            if taken.rowcount == 1:
                return True
            # No row yet (or a live one held by someone else): the primary key decides races.
            inserted = conn.execute(
                self.db.insert_ignore(leases)
                .values(
                    name=self.name,
                    holder=self.holder,
                    acquired_at=now,
                    expires_at=now + self.ttl,
                )
                .execution_options(preserve_rowcount=True)
            )  # SQLAlchemy keeps it for UPDATE only
            return inserted.rowcount == 1

    def renew(self) -> bool:
        """Push our expiry forward; False if another holder took the lease meanwhile."""
        now = clock.now()
        with self.db.transaction() as conn:
            result = conn.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(expires_at=now + self.ttl)
            )
        return result.rowcount == 1

    def release(self) -> None:
        """Give the lease up (only if we still hold it)."""
        with self.db.transaction() as conn:
            conn.execute(
                delete(leases).where(leases.c.name == self.name, leases.c.holder == self.holder)
            )

    def current(self) -> tuple[str, datetime] | None:
        """(holder, expires_at) of the lease as stored, or None if nobody holds it."""
        with self.db.connect() as conn:
            row = conn.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == self.name)
            ).first()
        return None if row is None else (row.holder, row.expires_at)
