"""The connection layer: SQLite settings, durability, and driver errors mapped to StateError."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from newsletter.errors import StateError
from newsletter.state import Database, Ledger, open_database
from newsletter.state import subscribers as subs
from tests.pg_fixture import PostgresServer, _free_port


def test_sqlite_file_and_directories_are_created_with_durable_settings(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    with open_database(f"sqlite:///{path}") as db:
        assert path.is_file()
        for _ in range(2):  # every pooled connection, not only the first
            with db.connect() as conn:
                settings = {
                    name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
                }
            assert settings == {
                "journal_mode": "wal",
                "synchronous": 2,  # 2 = FULL
                "foreign_keys": 1,
                "busy_timeout": 5000,
            }


def test_a_committed_record_survives_kill_9(tmp_path: Path, sqlite_url: str) -> None:
    with open_database(sqlite_url) as db:
        subs.add(db, "ada@example.org")
        Ledger(db).enqueue(1)
    code = """if True:
        import os, signal, sys
        from newsletter.models import DeliveryStatus
        from newsletter.state import DeliveryOutcome, Ledger, open_database
        ledger = Ledger(open_database(sys.argv[1]))
        row = ledger.pending(1)[0]
        ledger.record(1, [DeliveryOutcome(row.id, DeliveryStatus.SENT, provider_id="p-1")])
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint, no atexit
    """
    done = subprocess.run([sys.executable, "-c", code, sqlite_url], timeout=60)
    assert done.returncode == -9
    with open_database(sqlite_url) as db:
        summary = Ledger(db).summary(1)
    assert (summary.sent, summary.pending) == (1, 0)


@contextmanager
def held_elsewhere(db: Database) -> Iterator[None]:
    """Another connection holding an exclusive lock on the state, as a running `send` would."""
    if db.dialect == "sqlite":
        other = sqlite3.connect(db.where, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
    else:
        with Database(db.display_url) as peer, peer.transaction() as conn:
            conn.execute(text("LOCK TABLE subscribers IN ACCESS EXCLUSIVE MODE"))
            yield


def test_a_lock_held_by_another_process_becomes_state_error(db_url: str) -> None:
    with open_database(db_url, busy_timeout=0.3) as db, held_elsewhere(db):
        started = time.monotonic()
        with pytest.raises(StateError) as info:
            subs.add(db, "ada@example.org")
        waited = time.monotonic() - started
    assert info.value.message == (
        f"the state database {db.where} is locked by another process (waited 0.3 s)"
    )
    assert info.value.hint is not None and "another newsletter command" in info.value.hint
    assert 0.25 <= waited < 10


def test_read_only_sqlite_becomes_state_error(tmp_path: Path, sqlite_url: str) -> None:
    path = tmp_path / "state.db"
    with open_database(sqlite_url) as db:
        subs.add(db, "ada@example.org")
    with open_database(f"sqlite:///file:{path}?mode=ro&uri=true") as ro:
        assert subs.get(ro, "ada@example.org") is not None  # reading still works
        with pytest.raises(StateError) as info:
            subs.add(ro, "grace@example.org")
    assert info.value.message == f"the state database {path} is read-only"
    assert info.value.hint is not None and "check permissions" in info.value.hint


def test_read_only_postgresql_becomes_state_error(postgres_url: str) -> None:
    open_database(postgres_url).close()
    url = postgres_url + "%20-cdefault_transaction_read_only%3Don"
    with open_database(url) as ro:
        assert subs.count(ro)["active"] == 0
        with pytest.raises(StateError, match=r"is read-only$") as info:
            subs.add(ro, "ada@example.org")
    assert info.value.hint == "the server or database is in read-only mode; use a writable primary"


def test_cannot_connect_never_shows_the_password(postgres_server: PostgresServer) -> None:
    port = _free_port()  # nobody listens there
    url = f"postgresql+psycopg://newsletter:s3cret-pw@127.0.0.1:{port}/news"
    with pytest.raises(StateError) as info:
        open_database(url)
    assert info.value.message.startswith(
        f"cannot connect to the state database postgresql+psycopg://newsletter:***@127.0.0.1:"
        f"{port}/news: "
    )
    assert "refused" in info.value.message
    assert "s3cret-pw" not in "\n".join(info.value.lines())


def test_server_refusal_is_reported_with_the_password_masked(
    postgres_server: PostgresServer,
) -> None:
    url = f"postgresql+psycopg://postgres:wr0ng-pw@127.0.0.1:{postgres_server.port}/no_such_db"
    with pytest.raises(StateError) as info:
        open_database(url)
    assert info.value.message.startswith(
        "cannot connect to the state database postgresql+psycopg://postgres:***@127.0.0.1:"
    )
    assert 'database "no_such_db" does not exist' in info.value.message
    assert "wr0ng-pw" not in "\n".join(info.value.lines())


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgresql://u:pa55word@host:notaport/db",
            "invalid database URL 'postgresql://u:***@host:notaport/db'",
        ),
        (
            "mysql+pymysql://u:pa55word@host/db",
            "unsupported state database 'mysql+pymysql://u:***@host/db'",
        ),
        ("sqlite://", "an in-memory SQLite database cannot hold the state"),
        ("sqlite:///:memory:", "an in-memory SQLite database cannot hold the state"),
    ],
)
def test_unusable_urls_are_refused_clearly(url: str, message: str) -> None:
    with pytest.raises(StateError) as info:
        open_database(url)
    assert info.value.message == message
    assert "pa55word" not in "\n".join(info.value.lines())


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is a text file, not SQLite\n" * 100)
    with pytest.raises(StateError) as info:
        open_database(f"sqlite:///{path}")
    assert info.value.message == f"{path} is not a valid SQLite database (or is damaged)"


def test_the_directory_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the state dir should be")
    with pytest.raises(StateError) as info:
        open_database(f"sqlite:///{tmp_path / 'blocker' / 'state.db'}")
    assert info.value.message == (
        f"cannot create the directory {tmp_path / 'blocker'}: a file is in the way"
    )


def test_bugs_are_not_disguised_as_state_errors(db: Database) -> None:
    with pytest.raises(Exception) as info, db.connect() as conn:
        conn.execute(text("SELECT no_such_column FROM subscribers"))
    assert not isinstance(info.value, StateError)
