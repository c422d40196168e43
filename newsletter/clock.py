"""The one place "now" comes from, so builds are deterministic and tests control time."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime

_override: Callable[[], datetime] | None = None


def now() -> datetime:
    """Current time, timezone-aware (UTC unless a test or NEWSLETTER_NOW froze it).

    NEWSLETTER_NOW is a documented option (docs/configuration.md): it reproduces a past day's
    build in a real process, which an in-process ``set_clock`` cannot reach.
    """
    if _override is not None:
        return _override()
    frozen = os.environ.get("NEWSLETTER_NOW")
    if frozen:
        value = datetime.fromisoformat(frozen)
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.now(UTC)


def set_clock(func: Callable[[], datetime] | None) -> None:
    """Inject a clock (tests, the scheduler's simulated time); None restores the real one."""
    global _override
    _override = func


class FixedClock:
    """A settable clock for tests: ``set_clock(FixedClock(t))`` then ``clock.advance(…)``."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        from datetime import timedelta

        self.at = self.at + timedelta(**delta)
