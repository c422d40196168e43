"""The scheduler's decisions: fire times across DST, catch-up and skips, edition choice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from newsletter.deliver.send import open_state
from newsletter.errors import ScheduleError
from newsletter.pipeline import load_and_group
from newsletter.schedule.decisions import (
    due_edition,
    fire_times,
    missed_run,
    next_fire,
    pick_edition,
    previous_fire,
    resume_decision,
)
from newsletter.state.ledger import Ledger
from tests.schedule import (
    SHANGHAI,
    W22,
    W23,
    W24,
    sh,
)


# ---- fire times -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("weekday", "expected"),
    [
        ("1", {"Mon"}),
        ("0", {"Sun"}),
        ("7", {"Sun"}),
        ("mon", {"Mon"}),
        ("1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("5-7", {"Fri", "Sat", "Sun"}),
        ("*/2", {"Sun", "Tue", "Thu", "Sat"}),
        ("sat,0", {"Sat", "Sun"}),
    ],
)
def test_weekday_numbers_mean_what_crontab_means(weekday: str, expected: set[str]) -> None:
    # APScheduler 3 alone would read "1" as Tuesday and "*/2" as Mon, Wed, Fri, Sun.
    fires = fire_times(
        f"0 8 * * {weekday}",
        UTC,
        datetime(2024, 6, 2, tzinfo=UTC),
        datetime(2024, 6, 9, tzinfo=UTC),
    )
    assert {f.strftime("%a") for f in fires} == expected
    assert all(f.hour == 8 for f in fires)


def test_impossible_weekday_is_a_schedule_error() -> None:
    with pytest.raises(ScheduleError, match="weekday '8'"):
        fire_times(
            "0 8 * * 8", UTC, datetime(2024, 6, 2, tzinfo=UTC), datetime(2024, 6, 9, tzinfo=UTC)
        )


def test_fires_keep_local_time_across_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")  # summer time from 2024-03-31
    fires = fire_times(
        "0 8 * * mon",
        berlin,
        datetime(2024, 3, 17, tzinfo=berlin),
        datetime(2024, 4, 9, tzinfo=berlin),
    )
    assert [f.strftime("%m-%d %H:%M %Z") for f in fires] == [
        "03-18 08:00 CET",
        "03-25 08:00 CET",
        "04-01 08:00 CEST",
        "04-08 08:00 CEST",
    ]
    assert [f.astimezone(UTC).hour for f in fires] == [7, 7, 6, 6]


def test_repeated_and_skipped_wall_clock_times_fire_once_a_day() -> None:
    ny = ZoneInfo("America/New_York")
    fall = fire_times(
        "30 1 * * *", ny, datetime(2024, 11, 2, tzinfo=ny), datetime(2024, 11, 5, tzinfo=ny)
    )  # 01:30 happens twice on 11-03
    assert [f.isoformat() for f in fall] == [
        "2024-11-02T01:30:00-04:00",
        "2024-11-03T01:30:00-04:00",
        "2024-11-04T01:30:00-05:00",
    ]
    spring = fire_times(
        "30 2 * * *", ny, datetime(2024, 3, 9, tzinfo=ny), datetime(2024, 3, 12, tzinfo=ny)
    )  # 02:30 does not exist on 03-10
    assert [f.isoformat() for f in spring] == [
        "2024-03-09T02:30:00-05:00",
        "2024-03-10T03:30:00-04:00",
        "2024-03-11T02:30:00-04:00",
    ]


def test_previous_and_next_fire() -> None:
    assert previous_fire("0 8 * * mon", SHANGHAI, sh(8, 10)) == sh(8, 3)
    assert next_fire("0 8 * * mon", SHANGHAI, sh(8, 10)) == sh(8, 17)
    assert previous_fire("0 8 29 2 *", SHANGHAI, sh(8, 10)) == datetime(
        2024, 2, 29, 8, tzinfo=SHANGHAI
    )


# ---- catch-up decisions -----------------------------------------------------------------------
CRON, SIX_HOURS = "0 8 * * mon", 6 * 3600


def decide(last: datetime | None, now: datetime, grace: float = SIX_HOURS):  # type: ignore[no-untyped-def]
    return missed_run(last, now, CRON, grace, tz=SHANGHAI)


def test_on_time_fire_runs_with_the_previous_fire_as_window() -> None:
    d = decide(sh(8, 3), sh(8, 10) + timedelta(seconds=2))
    assert (d.action, d.fire, d.since, d.late) == ("run", sh(8, 10), sh(8, 3), timedelta(seconds=2))
    assert d.next_fire == sh(8, 17) and not d.missed and not d.coalesced


def test_late_within_grace_runs_once_and_the_boundary_is_inclusive() -> None:
    assert decide(sh(8, 3), sh(13, 10)).action == "run"
    assert decide(sh(8, 3), sh(14, 10)).action == "run"  # exactly 6 h late
    late = decide(sh(8, 3), sh(14, 10) + timedelta(seconds=1))
    assert (late.action, late.fire, late.missed) == ("skip", sh(8, 10), (sh(8, 10),))
    assert decide(sh(8, 10), sh(14, 10)).action == "wait"  # that fire was handled already


def test_downtime_over_several_fires_runs_only_the_latest_within_grace() -> None:
    d = decide(sh(8, 3), sh(9, 24))  # down from 06-03 to 06-24 09:00
    assert (d.action, d.fire, d.since) == ("run", sh(8, 24), sh(8, 17))
    assert d.missed == (sh(8, 10), sh(8, 17))
    gone = decide(sh(8, 3), sh(20, 24))
    assert (gone.action, gone.fire) == ("skip", sh(8, 24))
    assert gone.missed == (sh(8, 10), sh(8, 17), sh(8, 24))


def test_fires_within_a_long_grace_are_coalesced_into_one_run() -> None:
    d = decide(sh(8, 3), sh(9, 17), grace=8 * 86400)
    assert (d.action, d.fire, d.coalesced, d.since) == ("run", sh(8, 17), (sh(8, 10),), sh(8, 3))


def test_without_history_only_a_fire_within_grace_counts() -> None:
    assert decide(None, sh(9, 10)).fire == sh(8, 10)
    first = decide(None, sh(20, 10))
    assert (first.action, first.fire, first.next_fire) == ("wait", None, sh(8, 17))


def test_interrupted_send_active_within_grace_is_resumed_not_skipped() -> None:
    skip = decide(sh(8, 3), sh(20, 10))
    kept = resume_decision(skip, cron=CRON, tz=SHANGHAI, active_at=sh(19, 10), grace=SIX_HOURS)
    assert (kept.action, kept.fire, kept.since, kept.resuming) == ("run", sh(8, 10), sh(8, 3), True)
    stale = resume_decision(skip, cron=CRON, tz=SHANGHAI, active_at=sh(9, 10), grace=SIX_HOURS)
    assert stale.action == "skip"


# ---- which edition ----------------------------------------------------------------------------
def test_due_edition_is_the_latest_closed_in_the_window(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/b.md": W23, "issues/c.md": W24})
    now = at(sh(9, 17))
    grouping = load_and_group(cfg, now=now)
    with open_state(cfg) as db:
        ledger = Ledger(db)
        assert (
            due_edition(grouping, ledger, sh(8, 10), config=cfg, since=sh(8, 3)).key == "2024-W23"
        )
        pick = pick_edition(cfg, grouping, ledger, since=sh(8, 3), until=sh(8, 17))
        assert pick.edition is not None and pick.edition.key == "2024-W24"
        assert [e.key for e in pick.passed_over] == ["2024-W23"]
        ledger.enqueue(pick.edition.number)  # started, nothing sent yet: resume it
        again = pick_edition(cfg, grouping, ledger, since=sh(8, 10), until=sh(8, 17))
        assert again.resume and "resuming its interrupted send (0 of 6 sent)" in again.reason


def test_open_and_empty_periods_send_nothing_and_say_why(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/c.md": W24})
    grouping = load_and_group(cfg, now=at(sh(9, 10)))
    with open_state(cfg) as db:
        empty = pick_edition(cfg, grouping, Ledger(db), since=sh(8, 3), until=sh(8, 10))
        assert empty.edition is None
        assert empty.reason == (
            "the week 2024-06-03 – 2024-06-09 has no published issues: nothing to send"
        )
        # W24 has an issue but is still open on 06-10: the latest closed edition is W22.
        latest = due_edition(grouping, Ledger(db), sh(9, 10), config=cfg)
        assert latest is not None and latest.key == "2024-W22"
