"""The scheduler's decisions: when a fire is due and which edition it sends.

Plain functions over explicit times, so tests drive them with a fixed clock:

- ``fire_times`` / ``previous_fire``: the cron expression's fire times in the newsletter's zone.
- ``missed_run``: given the last fire handled and "now", run the latest fire (late, once, if
  within ``misfire_grace``), skip it (too late: never sent days late), or wait.
- ``pick_edition`` / ``due_edition``: the latest edition that closed since the previous fire,
  unless already sent; an interrupted send of it is resumed; an empty period sends nothing.

``runner.run_due`` acts on them; ``firelog`` keeps the fires and the lease.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Literal

from newsletter.config import Config
from newsletter.editions import calendar_period
from newsletter.editions import closes_at as period_closes
from newsletter.errors import ScheduleError
from newsletter.models import Edition
from newsletter.schedule import cron as _cron

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

    from newsletter.editions import Grouping
    from newsletter.state.ledger import Ledger

log = logging.getLogger("newsletter.schedule")

_TICK = timedelta(microseconds=1)
_LOOKBACK = tuple(timedelta(days=d) for d in (1 / 12, 2, 9, 32, 367, 8 * 366))


# ---- fire times -------------------------------------------------------------------------------
def cron_trigger(cron: str, tz: tzinfo) -> CronTrigger:
    """The trigger of ``[schedule] cron``; a bad line is a ScheduleError naming the key."""
    try:
        return _cron.cron_trigger(cron, tz)
    except ValueError as exc:
        raise ScheduleError(f"[schedule] cron: {exc}", hint=_cron.HINT) from exc


def _iter_fires(cron: str, tz: tzinfo, start: datetime, end: datetime) -> Iterator[datetime]:
    trigger = cron_trigger(cron, tz)
    previous: datetime | None = None
    t = trigger.get_next_fire_time(None, start + _TICK)
    while t is not None and t <= end:
        # Normalise through UTC: a time skipped by a spring-forward becomes the real instant.
        local = t.astimezone(UTC).astimezone(tz)
        # A wall-clock time repeated by a fall-back fires once, at its first occurrence (cron).
        if previous is None or local.replace(tzinfo=None) != previous.replace(tzinfo=None):
            if local > start:
                yield local
            previous = local
        t = trigger.get_next_fire_time(t, t)


def fire_times(
    cron: str, tz: tzinfo, start: datetime, end: datetime, *, limit: int = 10_000
) -> list[datetime]:
    """Fire times ``t`` with ``start < t <= end``, oldest first, aware in ``tz`` (DST-correct)."""
    out: list[datetime] = []
    for t in _iter_fires(cron, tz, start, end):
        if len(out) >= limit:
            break
        out.append(t)
    return out


def next_fire(cron: str, tz: tzinfo, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``."""
    return next(_iter_fires(cron, tz, after, after + _LOOKBACK[-1]), None)


def previous_fire(cron: str, tz: tzinfo, before: datetime) -> datetime | None:
    """The last fire time strictly before ``before`` (None if none in the last eight years)."""
    for span in _LOOKBACK:
        last = deque(_iter_fires(cron, tz, before - span, before - _TICK), maxlen=1)
        if last:
            return last[0]
    return None


# ---- catch-up after downtime ------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """What to do at ``now``: run one fire (perhaps late), skip a missed one, or wait."""

    action: Literal["run", "skip", "wait"]
    now: datetime
    fire: datetime | None = None  # the fire to run or to skip
    since: datetime | None = None  # run: editions that closed after this, up to ``fire``
    coalesced: tuple[datetime, ...] = ()  # earlier fires within the grace, folded into this run
    missed: tuple[datetime, ...] = ()  # fires older than the grace: never run (at most 100)
    next_fire: datetime | None = None
    resuming: bool = False  # re-running a fire whose send was interrupted recently

    @property
    def late(self) -> timedelta:
        return self.now - self.fire if self.fire is not None else timedelta(0)


def missed_run(
    last_run: datetime | None, now: datetime, cron: str, grace: float | timedelta, *, tz: tzinfo
) -> Decision:
    """Decide what is due at ``now`` given the last fire handled (``None``: never ran).

    Of the fires after ``last_run``, the latest is run if it is at most ``grace`` old (once,
    however many fires the downtime covered); if it is older it is skipped, never sent late.
    Without a history only a fire within the grace counts: a first start never catches up.
    """
    grace = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    horizon = now - grace  # fires before this are too old to run
    lower = last_run if last_run is not None else horizon - _TICK
    upcoming = next_fire(cron, tz, now)
    within = fire_times(cron, tz, max(lower, horizon - _TICK), now)
    missed = (
        tuple(fire_times(cron, tz, lower, horizon - _TICK, limit=100))
        if last_run is not None and lower < horizon
        else ()
    )
    if within:
        return Decision(
            "run",
            now,
            within[-1],
            since=previous_fire(cron, tz, within[0]),
            coalesced=tuple(within[:-1]),
            missed=missed,
            next_fire=upcoming,
        )
    if not missed:
        return Decision("wait", now, next_fire=upcoming)
    latest = previous_fire(cron, tz, horizon)  # the newest fire that is already too old
    return Decision("skip", now, latest or missed[-1], missed=missed, next_fire=upcoming)


def resume_decision(
    decision: Decision,
    *,
    cron: str,
    tz: tzinfo,
    active_at: datetime | None,
    grace: float | timedelta,
) -> Decision:
    """Turn a skip into a resume when the skipped fire's send was active within the grace.

    A long send (a rate-limited list of 100 000) can outlast the grace counted from its fire;
    what matters after a crash is how long ago it was still sending.
    """
    grace = grace if isinstance(grace, timedelta) else timedelta(seconds=grace)
    if (
        decision.action != "skip"
        or decision.fire is None
        or active_at is None
        or decision.now - active_at > grace
    ):
        return decision
    return replace(
        decision,
        action="run",
        since=previous_fire(cron, tz, decision.fire),
        missed=tuple(f for f in decision.missed if f != decision.fire),
        resuming=True,
    )


# ---- which edition ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    """The edition a fire sends (None: nothing), and why, in words for the log."""

    edition: Edition | None
    reason: str
    resume: bool = False  # its send was interrupted: finish it
    passed_over: tuple[Edition, ...] = ()  # also closed in the window, not sent automatically


def closes_at(edition: Edition, config: Config) -> datetime:
    """When an edition stops collecting issues: the midnight after its week or month ends;
    a one-per-issue or explicit edition is complete at its newest issue's date."""
    if config.editions.group_by in ("week", "month"):
        return period_closes(edition.end, config)
    return edition.date


def send_state(ledger: Ledger, number: int) -> Literal["unsent", "partial", "sent"]:
    """Whether an edition's send never started, was interrupted (rows pending) or is done."""
    if number not in ledger.sent_editions():
        return "unsent"
    return "partial" if ledger.summary(number).pending else "sent"


def pick_edition(
    config: Config, grouping: Grouping, ledger: Ledger, *, since: datetime | None, until: datetime
) -> Pick:
    """The latest edition that closed in ``(since, until]`` with at least one issue."""
    window = sorted(
        (
            e
            for e in grouping.editions
            if e.issues
            and not e.draft
            and (since is None or closes_at(e, config) > since)
            and closes_at(e, config) <= until
        ),
        key=lambda e: (closes_at(e, config), e.number),
    )
    if not window:
        return Pick(None, _nothing_closed(config, since, until))
    latest = window[-1]
    passed = tuple(e for e in window[:-1] if send_state(ledger, e.number) != "sent")
    label = f"edition {latest.number} {latest.title!r} ({plural(len(latest.issues), 'issue')})"
    state = send_state(ledger, latest.number)
    if state == "sent":
        return Pick(None, f"{label} was already sent: nothing to send", passed_over=passed)
    if state == "partial":
        s = ledger.summary(latest.number)
        return Pick(
            latest,
            f"{label}: resuming its interrupted send ({s.sent} of {s.total} sent)",
            resume=True,
            passed_over=passed,
        )
    return Pick(latest, f"{label} is due", passed_over=passed)


def due_edition(
    grouping: Grouping,
    ledger: Ledger,
    now: datetime,
    *,
    config: Config,
    since: datetime | None = None,
) -> Edition | None:
    """The edition to send at ``now`` for a fire whose previous fire was ``since``."""
    return pick_edition(config, grouping, ledger, since=since, until=now).edition


def _nothing_closed(config: Config, since: datetime | None, until: datetime) -> str:
    rule = config.editions.group_by
    if rule not in ("week", "month"):
        return f"no new edition since {local_time(since, config) if since else 'ever'}"
    # The last period that has ended: the one before the period containing "until".
    current = calendar_period(until.astimezone(config.newsletter.tz).date(), config)
    period = calendar_period(current[0] - timedelta(days=1), config)
    closed = period_closes(period[1], config)
    if since is not None and closed <= since:
        return f"no {rule} closed since the previous fire ({local_time(since, config)})"
    return f"the {rule} {period[0]} – {period[1]} has no published issues: nothing to send"


def upcoming(
    config: Config, ledger: Ledger, now: datetime, count: int = 5
) -> list[tuple[datetime, Pick]]:
    """The next ``count`` fire times and what each would send with the files as they are."""
    from newsletter.pipeline import load_and_group

    cron, tz = require_cron(config), config.newsletter.tz
    out: list[tuple[datetime, Pick]] = []
    at: datetime | None = now
    while at is not None and len(out) < count:
        at = next_fire(cron, tz, at)
        if at is not None:
            grouping = load_and_group(config, now=at)
            out.append(
                (
                    at,
                    pick_edition(
                        config, grouping, ledger, since=previous_fire(cron, tz, at), until=at
                    ),
                )
            )
    return out


def require_cron(config: Config) -> str:
    if not config.schedule.cron:
        raise ScheduleError(
            "[schedule] cron is not set in config.toml",
            hint='add:\n[schedule]\ncron = "0 8 * * mon"\nmisfire_grace = "6h"',
        )
    return config.schedule.cron


def local_time(at: datetime, config: Config) -> str:
    """``Mon 2024-06-10 08:00 CST``: how fire times are shown (the newsletter's zone)."""
    return at.astimezone(config.newsletter.tz).strftime("%a %Y-%m-%d %H:%M %Z")


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def human(span: timedelta) -> str:
    """``2 d 3 h``, ``5 min``, ``12 s``: a duration for log lines."""
    seconds = int(span.total_seconds())
    parts = [(seconds // 86400, "d"), (seconds % 86400 // 3600, "h"), (seconds % 3600 // 60, "min")]
    shown = [f"{n} {unit}" for n, unit in parts if n][:2]
    return " ".join(shown) or f"{seconds} s"


__all__ = [
    "Decision",
    "Pick",
    "closes_at",
    "cron_trigger",
    "due_edition",
    "fire_times",
    "human",
    "local_time",
    "missed_run",
    "next_fire",
    "pick_edition",
    "plural",
    "previous_fire",
    "require_cron",
    "resume_decision",
    "send_state",
    "upcoming",
]
