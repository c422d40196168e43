"""Tests of the preview server; ``copy_sample`` gives each test its own copy of the sample."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parents[2]
# Wednesday 1 May 2024 in the sample's time zone: weeks 15–17 are closed, week 18 (29 April –
# 5 May) is still being collected, and its 30 April issue is a draft.
SAMPLE_NOW = datetime(2024, 5, 1, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def copy_sample(dest: Path) -> Path:
    """config.toml, editions.lock, issues/, editions/ and templates/ of the repository's sample."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("config.toml", "editions.lock"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("issues", "editions", "templates"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, dest / name)
    return dest
