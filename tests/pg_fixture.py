"""A throwaway PostgreSQL cluster for tests: one per session, a fresh schema per test.

Use from any conftest: ``from tests.pg_fixture import postgres_server, postgres_url``.
Without the server binaries the tests skip, except when ``CI`` is set: there they fail.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TEST_DB = "newsletter_tests"


@dataclass(frozen=True)
class PostgresServer:
    """A running cluster on 127.0.0.1 with trust authentication for the ``postgres`` user."""

    bindir: Path
    datadir: Path
    port: int
    user: str = "postgres"
    host: str = "127.0.0.1"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def execute(self, sql: str, dbname: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        import psycopg

        with psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname=dbname, autocommit=True
        ) as conn:
            conn.execute(sql)


def find_pg_bin() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if found:
        return Path(max(found, key=lambda p: int(Path(p).parts[-3]))).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    if find_pg_bin() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run(cmd: list[str], *, as_postgres: bool) -> None:
    if as_postgres:  # initdb and postgres refuse to run as root
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)


def start_postgres() -> PostgresServer:
    """initdb a cluster in a temp dir and start it (fsync off: these databases are disposable)."""
    bindir = find_pg_bin()
    assert bindir is not None
    as_postgres = os.geteuid() == 0
    root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    datadir = root / "data"
    datadir.mkdir()
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(datadir, "postgres", "postgres")
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        as_postgres=as_postgres,
    )
    port = _free_port()
    options = (
        f"-p {port} -h 127.0.0.1 -k {root} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(datadir),
            "-l",
            str(root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ],
        as_postgres=as_postgres,
    )
    return PostgresServer(bindir=bindir, datadir=datadir, port=port)


def stop_postgres(server: PostgresServer) -> None:
    """Stop the cluster and delete its files."""
    try:
        _run(
            [
                str(server.bindir / "pg_ctl"),
                "-D",
                str(server.datadir),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            as_postgres=os.geteuid() == 0,
        )
    finally:
        shutil.rmtree(server.datadir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster for the whole session (skipped locally if unavailable)."""
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must test PostgreSQL: {reason}")
        pytest.skip(reason)
    try:
        server = start_postgres()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"cannot start PostgreSQL: {exc.cmd}: {exc.stderr}")
    try:
        server.execute(f"CREATE DATABASE {TEST_DB}")
        yield server
    finally:
        stop_postgres(server)


_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of an empty schema of its own (via search_path), dropped after the test.

    A schema costs milliseconds where CREATE DATABASE costs half a second per test.
    """
    name = f"t_{os.getpid()}_{next(_numbers)}"
    postgres_server.execute(f'CREATE SCHEMA "{name}"', dbname=TEST_DB)
    try:
        yield f"{postgres_server.url(TEST_DB)}?options=-csearch_path%3D{name}"
    finally:
        postgres_server.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE', dbname=TEST_DB)
