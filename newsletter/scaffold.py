"""`newsletter init`: a new project with a config, one example issue and the override folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

from newsletter.errors import NewsletterError

CONFIG = """\
# See docs/configuration.md for every key. Secrets never go here: they are read from the
# environment variables named below.

[newsletter]
title = {title}
description = "A weekly digest."
base_url = "https://example.org/"
language = "en"
timezone = "UTC"
author = "The editors"
email = "digest@example.org"

[editions]
group_by = "week"            # week | month | issue | explicit
title = {pattern}
section_by = "none"          # none | tag | section

[email]
from = {sender}
secret_env = "NEWSLETTER_SECRET"

[sender]
kind = "outbox"              # writes a Maildir in outbox/; see docs for smtp and HTTP APIs
"""

EXAMPLE = """\
---
title: "Attention Is All You Need"
date: 2017-06-12
url: https://arxiv.org/abs/1706.03762
authors: [Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones,
  Aidan N. Gomez, Łukasz Kaiser, Illia Polosukhin]
venue: NeurIPS
year: 2017
tags: [architectures]
summary: The Transformer replaces recurrence with attention alone.
---
Write a few paragraphs in your own words. **Markdown** works, with tables and footnotes.
"""

GITIGNORE = ".newsletter/\npublic/\noutbox/\n"


def _toml(value: str) -> str:
    # JSON string escapes (\", \\, \uXXXX) are also valid in TOML basic strings.
    return json.dumps(value, ensure_ascii=False)


def _display_name(title: str) -> str:
    """The title as an RFC 5322 display name: quoted when it holds specials such as , or <."""
    if re.fullmatch(r'[^()<>@,;:\\".\[\]]+', title):
        return title
    return '"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_project(directory: Path, title: str = "My Newsletter") -> list[Path]:
    """Create a project in ``directory``; refuses to overwrite any existing file."""
    if any((ord(c) < 32 and c != "\t") or c == "\x7f" for c in title):
        raise NewsletterError(
            f"--title {title!r}: line breaks and control characters are not "
            "allowed (the title ends up in email headers)"
        )
    files = {
        directory / "config.toml": CONFIG.format(
            title=_toml(title),
            pattern=_toml(title.replace("{", "{{").replace("}", "}}") + " #{number}"),
            sender=_toml(f"{_display_name(title)} <digest@example.org>"),
        ),
        directory / "issues" / "2017-06-12-attention.md": EXAMPLE,
        directory / "templates" / ".gitkeep": "",
        directory / ".gitignore": GITIGNORE,
    }
    existing = [p for p in files if p.exists()]
    if existing:
        raise NewsletterError(
            f"{existing[0]}: already exists; init never overwrites files",
            hint="choose an empty or new directory",
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)
