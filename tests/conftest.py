"""Shared fixtures: a fixed clock and throwaway newsletter projects."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter import clock
from newsletter.config import Config, load_config

# The real SMTP server (aiosmtpd on loopback) for every test folder.
pytest_plugins = ["tests.smtpd_fixture"]

BASE_CONFIG = """\
[newsletter]
title = "Test Digest"
description = "A digest for tests."
base_url = "https://digest.example.org/"
language = "en"
timezone = "Asia/Shanghai"
author = "Editors"
email = "digest@example.org"

[editions]
group_by = "week"
title = "Test Digest #{number}"
preheader = "{start:%Y-%m-%d} to {end:%Y-%m-%d}"

[email]
from = "Test Digest <digest@example.org>"
unsubscribe_mailto = "unsubscribe@example.org"
"""


def issue(title: str, date: str, body: str = "Some **text**.", **fields: str) -> str:
    """An issue file's text with front matter; extra fields are written verbatim."""
    lines = ["---", f'title: "{title}"', f"date: {date}"]
    lines += [f"{k}: {v}" for k, v in fields.items()]
    lines += ["---", body, ""]
    return "\n".join(lines)


MakeProject = Callable[..., Config]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's NEWSLETTER_* variables (a real secret, NEWSLETTER_NOW, overrides of any
    config key) must never reach a test: each test sets what it needs (after httpx)."""
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """Write config.toml and files into tmp_path/site and return the loaded Config."""

    def make(
        files: dict[str, str] | None = None, config: str = BASE_CONFIG, extra_config: str = ""
    ) -> Config:
        root = tmp_path / "site"
        root.mkdir(exist_ok=True)
        (root / "config.toml").write_text(config + extra_config, encoding="utf-8")
        for rel, text in (files or {}).items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return load_config(root, environ={})

    return make


@pytest.fixture
def frozen_now() -> Iterator[datetime]:
    """Freeze "now" (2024-06-01 UTC) for the whole test, restoring the real clock after."""
    at = datetime(2024, 6, 1, tzinfo=UTC)
    clock.set_clock(lambda: at)
    yield at
    clock.set_clock(None)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="Rewrite tests/golden/ from the current output (on purpose only).",
    )
