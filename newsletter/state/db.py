"""The state database connection: one SQLAlchemy engine, durable SQLite settings, mapped errors."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    Text,
    any_,
    bindparam,
    create_engine,
    event,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.sql.dml import Insert

from newsletter.errors import StateError

SUPPORTED = ("sqlite", "postgresql")

# SQLite primary result codes (the low byte of the extended code).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26

_LOCKED_HINT = (
    "another newsletter command (send, schedule, subscribers import) is writing to it; "
    "wait for it to finish or stop it, then try again"
)


class Database:
    """A state database reachable at one SQLAlchemy URL (SQLite file or PostgreSQL server).

    Thread-safe: every call checks a connection out of the engine's pool, so each thread works
    on its own connection. Use ``transaction()`` for writes and ``connect()`` for reads.
    """

    def __init__(self, url: str, *, busy_timeout: float = 5.0) -> None:
        try:
            self._url: URL = make_url(url)
        except (ArgumentError, ValueError):
            # SQLAlchemy's own message repeats the whole URL, password included.
            raise StateError(
                f"invalid database URL {mask_url(url)!r}",
                hint="use sqlite:///path/to/state.db or "
                "postgresql+psycopg://user:password@host/dbname",
            ) from None
        self.display_url = self._url.render_as_string(hide_password=True)
        self.dialect = self._url.get_backend_name()
        self.busy_timeout = busy_timeout
        if self.dialect not in SUPPORTED:
            raise StateError(
                f"unsupported state database {self.display_url!r}",
                hint="use SQLite (sqlite:///path) or PostgreSQL (postgresql+psycopg://…)",
            )
        if self.dialect == "sqlite" and self._url.database in (None, "", ":memory:"):
            # An in-memory database is private to one connection; the pool hands out several.
            raise StateError(
                "an in-memory SQLite database cannot hold the state",
                hint="give a file path, e.g. sqlite:///.newsletter/state.db",
            )
        try:
            self.engine: Engine = _make_engine(self._url, self.dialect, busy_timeout)
        except ImportError as exc:
            raise StateError(
                f"the database driver for {self.display_url!r} is not installed",
                hint="pip install 'newsletter[postgres]' (psycopg)",
            ) from exc

    @property
    def where(self) -> str:
        """How messages name this database: the file path for SQLite, the masked URL otherwise."""
        if self.dialect == "sqlite" and self._url.database:
            return self._url.database.removeprefix("file:").split("?")[0]
        return self.display_url

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, for SQLite URLs that name a file that may be created."""
        if self.dialect != "sqlite" or self._url.query.get("mode") in ("ro", "memory"):
            return None
        return Path(self.where)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read transaction (committed on exit; use ``transaction()`` to write)."""
        with self._connection(write=False) as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on normal exit, rolled back on an exception.

        On SQLite it starts with BEGIN IMMEDIATE: taking the write lock up front lets the busy
        timeout wait for other writers, where a deferred read-then-write would fail at once.
        """
        with self._connection(write=True) as conn:
            yield conn

    def insert_ignore(self, table: Table) -> Insert:
        """INSERT … ON CONFLICT DO NOTHING for this dialect (safe against concurrent writers)."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    def any_of(self, column: ColumnElement[str], values: Sequence[str]) -> ColumnElement[bool]:
        """``column IN (values)``; on PostgreSQL one array parameter (``= ANY(…)``), because a
        long IN list costs the driver and the planner more than the index lookups themselves."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import ARRAY

            return column == any_(bindparam(None, list(values), type_=ARRAY(Text)))
        return column.in_(values)

    @contextlib.contextmanager
    def _connection(self, *, write: bool) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except DBAPIError as exc:
            raise self.error(exc, connecting=True) or self._cannot_connect(exc) from exc
        try:
            with conn:
                if write and self.dialect == "sqlite":
                    conn.execution_options(newsletter_write=True)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            mapped = self.error(exc, connecting=False)
            if mapped is None:
                raise
            raise mapped from exc

    def error(self, exc: DBAPIError, *, connecting: bool) -> StateError | None:
        """The StateError for a driver error users can act on; None for bugs (keep traceback)."""
        orig = exc.orig
        if isinstance(orig, sqlite3.Error):
            code = (getattr(orig, "sqlite_errorcode", 0) or 0) & 0xFF
            if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                return self._locked()
            if code == _SQLITE_READONLY:
                return self._read_only()
            if code == _SQLITE_CANTOPEN:
                return StateError(
                    f"cannot open the state database {self.where}",
                    hint="check that its directory exists and that newsletter may "
                    "read and write both the file and the directory",
                )
            if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
                return StateError(
                    f"{self.where} is not a valid SQLite database (or is damaged)",
                    hint="restore it from a backup, or point [state] database at another file",
                )
            if code in (_SQLITE_FULL, _SQLITE_IOERR):
                return StateError(
                    f"cannot write the state database {self.where}: {self._reason(exc)}",
                    hint="is the disk full?",
                )
            return None
        sqlstate = str(getattr(orig, "sqlstate", "") or "")
        if sqlstate in ("55P03", "40P01"):  # lock_not_available, deadlock_detected
            return self._locked()
        if sqlstate == "25006":  # read_only_sql_transaction
            return self._read_only()
        if sqlstate == "42501":
            return StateError(
                f"permission denied in the state database {self.where}: {self._reason(exc)}",
                hint="grant the database user rights to create and write tables",
            )
        if sqlstate.startswith("53"):
            return StateError(f"the database server is out of resources: {self._reason(exc)}")
        if connecting or sqlstate.startswith(("08", "28", "3D", "57P")):
            return self._cannot_connect(exc)
        return None

    def _locked(self) -> StateError:
        return StateError(
            f"the state database {self.where} is locked by another process "
            f"(waited {self.busy_timeout:g} s)",
            hint=_LOCKED_HINT,
        )

    def _read_only(self) -> StateError:
        if self.dialect == "sqlite":
            hint = (
                "newsletter must be able to write the file and its directory (SQLite keeps "
                "-wal and -shm files next to it); check permissions or set [state] database"
            )
        else:
            hint = "the server or database is in read-only mode; use a writable primary"
        return StateError(f"the state database {self.where} is read-only", hint=hint)

    def _cannot_connect(self, exc: DBAPIError) -> StateError:
        return StateError(
            f"cannot connect to the state database {self.display_url}: {self._reason(exc)}",
            hint="check that the server is running and that the host, port, user, "
            "password and database name in [state] database are right",
        )

    def _reason(self, exc: DBAPIError) -> str:
        """The driver's message, first line only (no SQL, no parameters), password scrubbed."""
        lines = str(exc.orig).strip().splitlines() or [type(exc.orig).__name__]
        reason = lines[0]
        password = self._url.password
        if password and len(str(password)) >= 3:
            reason = reason.replace(str(password), "***")
        return reason


def mask_url(url: str) -> str:
    """Hide the password of a URL that may not even parse (``scheme://user:***@host``)."""
    return re.sub(r"(://[^/:@]*:)[^@]*@", r"\1***@", url)


def _make_engine(url: URL, dialect: str, busy_timeout: float) -> Engine:
    if dialect == "postgresql":
        args: dict[str, Any] = {
            "connect_timeout": max(1, round(busy_timeout * 2)),
            "application_name": "newsletter",
        }
        # Waiting for a row or table lock is bounded like SQLite's busy timeout, then mapped.
        options = f"-c lock_timeout={int(busy_timeout * 1000)}"
        extra = url.query.get("options")
        if extra:  # the user's own options from the URL (e.g. search_path) are kept
            options = f"{' '.join(extra) if isinstance(extra, tuple) else extra} {options}"
        args["options"] = options
        return create_engine(url, connect_args=args, pool_pre_ping=True)
    # SQLite connections are cheap and writes serialize anyway: never make a thread wait for a
    # pooled connection (that wait would end in a pool timeout, not a clear error).
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout}, pool_size=8, max_overflow=-1
    )
    event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
        # pysqlite's implicit BEGIN is deferred and skips DDL; we issue our own (see _sqlite_begin).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            _use_wal(cur, busy_timeout)
            # FULL fsyncs the WAL at every commit: a recorded "sent" survives power loss.
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    return on_connect


def _use_wal(cur: sqlite3.Cursor, busy_timeout: float) -> None:
    """Switch to WAL, which lets readers run beside the one writer.

    The mode is persistent, so it is only set when missing (a read-only database already in
    WAL mode still opens). Switching fails with SQLITE_BUSY at once, without the busy
    handler, while another connection opens the new file: retry within the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(conn: Connection) -> None:
    write = conn.get_execution_options().get("newsletter_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def open_database(url: str, *, busy_timeout: float = 5.0) -> Database:
    """Open the state database at ``url``, creating the SQLite file and applying migrations."""
    from newsletter.state.migrations import migrate

    db = Database(url, busy_timeout=busy_timeout)
    try:
        path = db.sqlite_path
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                in_the_way = isinstance(exc, FileExistsError | NotADirectoryError)
                why = "a file is in the way" if in_the_way else exc.strerror
                raise StateError(
                    f"cannot create the directory {path.parent}: {why}",
                    hint="check permissions, or set [state] dir in config.toml",
                ) from exc
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db
