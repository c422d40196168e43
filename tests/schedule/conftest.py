"""Fixtures for the scheduler tests: a frozen clock and a weekly project with subscribers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

import pytest

from newsletter import clock
from newsletter.config import Config
from newsletter.deliver.send import open_state
from newsletter.state import subscribers
from tests.conftest import BASE_CONFIG, MakeProject
from tests.schedule import EMAILS, SCHEDULE


@pytest.fixture
def at() -> Iterator[Callable[[datetime], datetime]]:
    """``at(t)`` freezes clock.now() at t (for the ledger, the lease and the fire log)."""

    def freeze(when: datetime) -> datetime:
        clock.set_clock(lambda: when)
        return when

    yield freeze
    clock.set_clock(None)


@pytest.fixture
def project(make_project: MakeProject) -> Callable[..., Config]:
    """A weekly project in Asia/Shanghai with six subscribers; ``files`` are issue files."""

    def make(files: dict[str, str], extra: str = SCHEDULE, config: str = BASE_CONFIG) -> Config:
        cfg = make_project(files=files, config=config, extra_config=extra)
        with open_state(cfg) as db:
            for email in EMAILS:
                subscribers.add(db, email)
        return cfg

    return make
