"""Scheduler tests: shared constants and helpers (fixtures are in conftest.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from newsletter.config import Config
from newsletter.pipeline import load_and_group
from newsletter.senders.memory import MemorySender
from tests.conftest import issue

SHANGHAI = ZoneInfo("Asia/Shanghai")
ENV = {"NEWSLETTER_SECRET": "schedule-test-secret-0123456789"}
SCHEDULE = '\n[schedule]\ncron = "0 8 * * mon"\nmisfire_grace = "6h"\n[sender]\nconcurrency = 1\n'
W22 = issue("Week 22 paper", "2024-05-29T10:00:00+08:00")  # week of 2024-05-27, closes 06-03
W23 = issue("Week 23 paper", "2024-06-05T10:00:00+08:00")  # week of 2024-06-03, closes 06-10
W24 = issue("Week 24 paper", "2024-06-12T10:00:00+08:00")  # week of 2024-06-10, closes 06-17
EMAILS = [f"reader{i}@example.org" for i in range(6)]


def sh(hour: int, day: int, month: int = 6, minute: int = 0) -> datetime:
    """A time in Asia/Shanghai, 2024."""
    return datetime(2024, month, day, hour, minute, tzinfo=SHANGHAI)


def publish(command: str, schedule: str = SCHEDULE) -> str:
    return f"{schedule}[publish]\ncommand = {json.dumps(command)}\n"


def recipients(sender: MemorySender) -> Counter[tuple[int, str]]:
    return Counter((m.edition, m.recipient) for m in sender.sent)


def edition_number(cfg: Config, when: datetime, key: str) -> int:
    return next(e.number for e in load_and_group(cfg, now=when).editions if e.key == key)
