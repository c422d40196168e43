"""Crontab lines → APScheduler triggers: a leaf that config validation and the scheduler share."""

from __future__ import annotations

import re
from datetime import tzinfo
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab numbering: 0 = Sunday
HINT = 'e.g. cron = "0 8 * * mon" (Mondays at 08:00); weekdays are 0-7 (0 and 7 = Sunday)'


def cron_trigger(cron: str, tz: tzinfo) -> CronTrigger:
    """APScheduler's trigger for a 5-field crontab line, with crontab weekday numbers.

    APScheduler 3 counts weekday 0 as Monday where cron counts it as Sunday, so "0 8 * * 1"
    would fire on Tuesdays; numbers are turned into names (which both agree on) first.
    Raises ValueError with the reason (without the key: callers say where it came from).
    """
    from apscheduler.triggers.cron import CronTrigger

    fields = cron.split()
    if len(fields) != 5:
        raise ValueError(
            f"{cron!r} must have 5 fields (minute hour day-of-month month day-of-week)"
        )
    fields[4] = ",".join(_weekday_names(part, cron) for part in fields[4].lower().split(","))
    try:
        return CronTrigger.from_crontab(" ".join(fields), timezone=tz)
    except ValueError as exc:
        raise ValueError(f"invalid expression {cron!r}: {exc}") from exc


def _weekday_names(part: str, cron: str) -> str:
    base, slash, step = part.partition("/")
    m = re.fullmatch(r"(\*)|(\d+)(?:-(\d+))?", base)
    if not m or (base == "*" and not slash) or (slash and not step.isdigit()):
        return part  # names ("mon-fri") and anything APScheduler should judge itself
    if m[1]:
        lo, hi = 0, 6
    else:
        lo = int(m[2])
        hi = int(m[3] or (7 if slash else m[2]))
    if hi > 7 or lo > hi or (slash and int(step) == 0):
        raise ValueError(f"weekday {part!r} in {cron!r} is out of range")
    days = sorted({d % 7 for d in range(lo, hi + 1, int(step or 1))})
    return ",".join(_DAY_NAMES[d] for d in days)
