"""The scheduler lease: refusal while held, takeover after expiry, atomic under races."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from newsletter.clock import FixedClock
from newsletter.state import Database, Lease, open_database


def test_refused_while_held_taken_over_after_expiry(db: Database, fixed_clock: FixedClock) -> None:
    a = Lease(db, "scheduler", "host-a:1", ttl_seconds=60)
    b = Lease(db, "scheduler", "host-b:2", ttl_seconds=60)
    assert a.acquire()
    assert a.acquire()  # re-acquiring our own lease extends it
    assert not b.acquire()
    fixed_clock.advance(seconds=59)  # 12:00:59
    assert not b.acquire()
    assert a.renew()  # valid until 12:01:59
    assert a.current() == ("host-a:1", datetime(2024, 5, 1, 12, 1, 59, tzinfo=UTC))
    fixed_clock.advance(seconds=59)  # 12:01:58
    assert not b.acquire()
    fixed_clock.advance(seconds=2)  # 12:02:00: expired
    assert b.acquire()
    assert b.current() == ("host-b:2", datetime(2024, 5, 1, 12, 3, tzinfo=UTC))
    assert not a.renew()  # a lost it while it was not looking
    assert not a.acquire()


def test_release_frees_it_at_once(db: Database, fixed_clock: FixedClock) -> None:
    a = Lease(db, "scheduler", "a", 300)
    b = Lease(db, "scheduler", "b", 300)
    assert a.acquire()
    b.release()  # not ours: nothing happens
    assert a.current() is not None
    a.release()
    assert a.current() is None
    assert b.acquire()


def test_different_names_are_independent(db: Database) -> None:
    assert Lease(db, "scheduler", "a", 60).acquire()
    assert Lease(db, "send-7", "b", 60).acquire()


def test_only_one_of_many_racing_threads_wins(db_url: str) -> None:
    dbs = [open_database(db_url) for _ in range(2)]  # two "processes" with their own pools
    try:
        wins: list[str] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def race(n: int) -> None:
            try:
                barrier.wait()
                if Lease(dbs[n % 2], "scheduler", f"holder-{n}", 60).acquire():
                    wins.append(f"holder-{n}")
            except BaseException as exc:  # reported below, failing the test
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(wins) == 1
        assert Lease(dbs[0], "scheduler", "x", 60).current() is not None
        held = Lease(dbs[0], "scheduler", "x", 60).current()
        assert held is not None and held[0] == wins[0]
    finally:
        for d in dbs:
            d.close()


def test_ttl_must_be_positive(db: Database) -> None:
    with pytest.raises(ValueError, match="positive"):
        Lease(db, "scheduler", "a", 0)
