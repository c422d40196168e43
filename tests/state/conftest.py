"""State test fixtures: every `db` test runs twice, on a SQLite file and on real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.clock import FixedClock, set_clock
from newsletter.state import Database, open_database
from tests.pg_fixture import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]  # re-exported: pytest finds fixtures by name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty state database on each backend (PostgreSQL starts only if needed)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """An opened, migrated state database, closed after the test."""
    database = open_database(db_url)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
def fixed_clock() -> Iterator[FixedClock]:
    """Freeze newsletter.clock at 2024-05-01 12:00 UTC; advance it by hand."""
    clock = FixedClock(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
    set_clock(clock)
    try:
        yield clock
    finally:
        set_clock(None)
