"""Fixtures for delivery tests: a built project with subscribers in a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from newsletter.config import Config
from newsletter.deliver.send import open_state
from newsletter.state import subscribers
from newsletter.state.db import Database
from tests.conftest import MakeProject, issue

SECRET_ENV = {"NEWSLETTER_SECRET": "test-secret-0123456789abcdef"}


@dataclass
class Project:
    config: Config
    db: Database


@pytest.fixture
def project(make_project: MakeProject, frozen_now: object) -> Iterator[Project]:
    config = make_project(
        {
            "issues/a.md": issue(
                "First paper 第一篇", "2024-04-09", "Body *one*.", url="https://arxiv.org/abs/1"
            ),
            "issues/b.md": issue(
                "Second paper", "2024-04-16", "Body two.", url="https://arxiv.org/abs/2"
            ),
        }
    )
    db = open_state(config)
    for i in range(20):
        subscribers.add(db, f"reader{i:02d}@example.org", f"Reader {i}")
    yield Project(config, db)
    db.close()
