"""Fixtures for the reliability tests that share a small site with subscribers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from newsletter.config import Config
from newsletter.deliver.send import open_state
from newsletter.state import subscribers
from newsletter.state.db import Database
from tests.conftest import MakeProject
from tests.reliability.security_support import GOOD_ISSUE


@pytest.fixture
def site(make_project: MakeProject, frozen_now: object) -> Config:
    return make_project({"issues/good.md": GOOD_ISSUE})


@pytest.fixture
def state(site: Config) -> Iterator[Database]:
    db = open_state(site)
    for i in range(3):
        subscribers.add(db, f"reader{i}@example.org", f"Reader {i}")
    yield db
    db.close()
