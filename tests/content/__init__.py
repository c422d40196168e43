"""Tests for stage "load"; ``make_project`` builds a throwaway project to load from."""

from __future__ import annotations

from pathlib import Path

from newsletter.config import Config, load_config

CONFIG = """\
[newsletter]
title = "Paper Digest"
base_url = "https://example.org/digest"
timezone = "Asia/Shanghai"
"""


def make_project(root: Path, files: dict[str, str | bytes], config: str = CONFIG) -> Config:
    """Write ``config.toml`` and ``files`` (project-relative paths) under ``root``; load it."""
    (root / "config.toml").write_text(config, encoding="utf-8")
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return load_config(root, environ={})


def issue(front: str, body: str = "Body text.\n") -> str:
    """An issue file from front-matter lines (without the fences) and a body."""
    return f"---\n{front}---\n{body}"
