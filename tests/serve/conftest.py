"""Fixtures for the subscription service: a project, an app on TestClient, a fixed clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient  # tests/serve/__init__.py filters its warning

from newsletter.clock import FixedClock, set_clock
from newsletter.config import Config
from newsletter.senders.memory import MemorySender
from newsletter.serve.app import create_app
from newsletter.serve.settings import ServeSettings
from newsletter.state.db import Database, open_database
from newsletter.tokens import Signer
from tests.conftest import MakeProject

SECRET = "test-secret-0123456789-abcdefghij"
ENV = {"NEWSLETTER_SECRET": SECRET}
BASE = "https://digest.example.org"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LINK = re.compile(r"https://digest\.example\.org(/confirm/[A-Za-z0-9_-]+)")


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    """Freeze newsletter.clock at 2024-06-01 12:00 UTC; advance it by hand."""
    fixed = FixedClock(datetime(2024, 6, 1, 12, 0, tzinfo=UTC))
    set_clock(fixed)
    yield fixed
    set_clock(None)


@pytest.fixture
def config(make_project: MakeProject) -> Config:
    return make_project()


@pytest.fixture
def signer() -> Signer:
    return Signer(SECRET.encode())


@dataclass
class Service:
    """An app under TestClient plus what a test inspects: sent mail and the database."""

    client: TestClient
    sender: MemorySender
    config: Config
    db: Database

    def csrf(self) -> str:
        page = self.client.get("/subscribe")
        assert page.status_code == 200
        match = _CSRF.search(page.text)
        assert match, page.text
        return match.group(1)

    def subscribe(self, email: str, name: str = "", **extra: str) -> httpx.Response:
        data = {"csrf_token": self.csrf(), "email": email, "name": name, **extra}
        return self.client.post("/subscribe", data=data)

    def confirm_links(self) -> list[str]:
        """The confirmation paths mailed so far, oldest first."""
        return [m.group(1) for msg in self.sender.sent if (m := _LINK.search(msg.text))]


MakeService = Callable[..., Service]


@pytest.fixture
def make_service(config: Config, clock: FixedClock) -> Iterator[MakeService]:
    """Start apps (lifespan entered) over ``config``; all are stopped after the test."""
    stack: list[tuple[TestClient, Database]] = []

    def make(
        settings: ServeSettings | None = None,
        environ: dict[str, str] | None = None,
        http_client: httpx.Client | None = None,
        project: Config | None = None,
        **client_args: Any,
    ) -> Service:
        sender = MemorySender()
        chosen = project or config
        app = create_app(
            chosen,
            sender=sender,
            environ={**ENV, **(environ or {})},
            settings=settings or ServeSettings(),
            http_client=http_client,
            build_site=False,
        )
        client = TestClient(app, base_url=BASE, **client_args)
        client.__enter__()
        db = open_database(chosen.database_url)
        stack.append((client, db))
        return Service(client, sender, chosen, db)

    yield make
    for client, db in stack:
        db.close()
        client.__exit__(None, None, None)


@pytest.fixture
def service(make_service: MakeService) -> Service:
    return make_service()
