"""The scheduler's state in the database: the fires handled so far, and the one-scheduler lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    inspect,
    select,
)
from sqlalchemy import update as sql_update

from newsletter import clock
from newsletter.config import Config
from newsletter.errors import NewsletterError, ScheduleError
from newsletter.state.db import Database
from newsletter.state.lease import Lease
from newsletter.state.schema import UTCDateTime, leases

log = logging.getLogger("newsletter.schedule")

LEASE_NAME = "scheduler"
LEASE_TTL = 90.0  # seconds; renewed every third of it, so a stuck holder is replaced quickly
SETTLED = frozenset({"sent", "nothing", "skipped", "abandoned"})  # fires never run again

# Not part of newsletter.state's migrated schema: the scheduler creates its own table on first
# use, like APScheduler does for its job store in the same database.
_metadata = MetaData()
schedule_fires = Table(
    "schedule_fires",
    _metadata,
    Column("fire_time", UTCDateTime, primary_key=True),
    Column("status", String(16), nullable=False),  # running, a SETTLED one, failed, interrupted
    Column("edition", Integer, nullable=True),
    Column("detail", Text, nullable=False, server_default=""),
    Column("started_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),  # heartbeat while a send runs
)


@dataclass(frozen=True)
class FireRecord:
    fire: datetime
    status: str
    edition: int | None
    detail: str
    started_at: datetime
    updated_at: datetime


class FireLog:
    """The fires handled so far: ``--once`` from cron learns about misfires from it."""

    def __init__(self, db: Database, *, create: bool = True) -> None:
        self.db = db
        if create:
            with db.transaction() as conn:
                _metadata.create_all(conn)

    def exists(self) -> bool:
        with self.db.connect() as conn:
            return inspect(conn).has_table(schedule_fires.name)

    def last_settled(self) -> datetime | None:
        """Where the history of fires starts for ``missed_run``: the newest fire that must not
        run again (sent, nothing to send, skipped); if none is settled yet, just before the
        oldest one recorded (so an unfinished first fire still counts); None if no fire ever."""
        c = schedule_fires.c
        with self.db.connect() as conn:
            settled: datetime | None = conn.execute(
                select(func.max(c.fire_time)).where(c.status.in_(SETTLED))
            ).scalar()
            first: datetime | None = conn.execute(select(func.min(c.fire_time))).scalar()
        if settled is not None:
            return settled
        return first - timedelta(microseconds=1) if first is not None else None

    def get(self, fire: datetime) -> FireRecord | None:
        with self.db.connect() as conn:
            row = conn.execute(
                select(schedule_fires).where(schedule_fires.c.fire_time == fire)
            ).first()
        return None if row is None else FireRecord(*row)

    def recent(self, limit: int = 5) -> list[FireRecord]:
        with self.db.connect() as conn:
            rows = conn.execute(
                select(schedule_fires).order_by(schedule_fires.c.fire_time.desc()).limit(limit)
            ).all()
        return [FireRecord(*row) for row in rows]

    def start(self, fire: datetime, edition: int | None = None) -> None:
        self._put(fire, "running", edition, "")

    def finish(
        self, fire: datetime, status: str, detail: str = "", edition: int | None = None
    ) -> None:
        self._put(fire, status, edition, detail)

    def touch(self, fire: datetime) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                sql_update(schedule_fires)
                .where(schedule_fires.c.fire_time == fire)
                .values(updated_at=clock.now())
            )

    def abandon_before(self, fire: datetime, config: Config) -> None:
        """Older fires that never finished are given up (said once, loudly), not resumed later."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(schedule_fires).where(
                    schedule_fires.c.fire_time < fire, schedule_fires.c.status.not_in(SETTLED)
                )
            ).all()
        for rec in (FireRecord(*row) for row in rows):
            what = f"edition {rec.edition}" if rec.edition is not None else "its run"
            advice = (
                f": finish it with `newsletter send {rec.edition} --yes`"
                if rec.edition is not None
                else ""
            )
            log.warning(
                "the run of fire %s did not finish (%s, %s); a later fire does not resume %s%s",
                rec.fire.astimezone(config.newsletter.tz).strftime("%a %Y-%m-%d %H:%M %Z"),
                rec.status,
                rec.detail or "no detail",
                what,
                advice,
            )
            self._put(rec.fire, "abandoned", rec.edition, f"{rec.status}: {rec.detail}"[:500])

    def _put(self, fire: datetime, status: str, edition: int | None, detail: str) -> None:
        now = clock.now()
        values: dict[str, Any] = {"status": status, "detail": detail[:2000], "updated_at": now}
        if edition is not None:
            values["edition"] = edition
        with self.db.transaction() as conn:
            changed = conn.execute(
                sql_update(schedule_fires)
                .where(schedule_fires.c.fire_time == fire)
                .values(**values)
            )
            if changed.rowcount == 0:
                conn.execute(
                    self.db.insert_ignore(schedule_fires).values(
                        fire_time=fire, started_at=now, edition=edition, **values
                    )
                )


class LeaseKeeper:
    """Holds the scheduler lease for one run or a whole foreground scheduler, renewing it.

    A second scheduler against the same database gets ``ScheduleError``. If renewing finds
    the lease taken (we were frozen past its expiry), ``lost`` and ``stop`` are set so the
    send stops after the messages in flight. A lease left by a process of this host that no
    longer exists (kill -9) is taken over at once instead of after its expiry.
    """

    def __init__(
        self,
        db: Database,
        *,
        stop: threading.Event | None = None,
        holder: str | None = None,
        ttl: float = LEASE_TTL,
    ) -> None:
        self.lease = Lease(db, LEASE_NAME, holder, ttl)
        self.stop = stop or threading.Event()
        self.lost = threading.Event()
        self.beat: Callable[[], None] | None = None  # called at every renewal (a heartbeat)
        self.interval = ttl / 3
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def holder(self) -> str:
        return self.lease.holder

    def acquire(self) -> None:
        if self.lease.acquire():
            return
        held = self.lease.current()
        if held is not None and _gone(held[0]) and self._take_over(held[0]):
            log.warning(
                "took over the scheduler lease of %s (that process no longer runs)", held[0]
            )
            return
        who, until = held if held else ("another process", clock.now())
        raise ScheduleError(
            f"another scheduler is running against {self.lease.db.where}: {who} holds the "
            f"lease until {until.isoformat(timespec='seconds')}",
            hint="only one `newsletter schedule` may run per state database; stop the other "
            "one, or wait until its lease expires if it was killed",
        )

    def _take_over(self, holder: str) -> bool:
        with self.lease.db.transaction() as conn:  # only if that very holder still has it
            conn.execute(
                delete(leases).where(leases.c.name == LEASE_NAME, leases.c.holder == holder)
            )
        return self.lease.acquire()

    def __enter__(self) -> Self:
        self.acquire()
        self._thread = threading.Thread(target=self._renew, name="lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost.is_set():
            self.lease.release()

    def _renew(self) -> None:
        while not self._done.wait(self.interval):
            try:
                kept = self.lease.renew()
                if kept and self.beat is not None:
                    self.beat()
            except NewsletterError as exc:  # a locked database: try again next round
                log.warning("could not renew the scheduler lease: %s", exc)
                continue
            if not kept:
                held = self.lease.current()
                log.error(
                    "lost the scheduler lease to %s; stopping after the messages in flight",
                    held[0] if held else "nobody",
                )
                self.lost.set()
                self.stop.set()
                return


def _gone(holder: str) -> bool:
    """True if ``holder`` (``host:pid``) names a process of this host that has exited."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only the lease's expiry can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by someone else
        return False
    return False
