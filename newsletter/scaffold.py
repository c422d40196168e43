"""`newsletter init`: a new project with a config, one example issue and the override folder."""

from __future__ import annotations

from pathlib import Path

from newsletter.errors import NewsletterError

CONFIG = """\
# See docs/configuration.md for every key. Secrets never go here: they are read from the
# environment variables named below.

[newsletter]
title = "{title}"
description = "A weekly digest."
base_url = "https://example.org/"
language = "en"
timezone = "UTC"
author = "The editors"
email = "digest@example.org"

[editions]
group_by = "week"            # week | month | issue | explicit
title = "{title} #{{number}}"
section_by = "none"          # none | tag | section

[email]
from = "{title} <digest@example.org>"
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


def init_project(directory: Path, title: str = "My Newsletter") -> list[Path]:
    """Create a project in ``directory``; refuses to overwrite any existing file."""
    files = {
        directory / "config.toml": CONFIG.format(title=title.replace('"', "'")),
        directory / "issues" / "2017-06-12-attention.md": EXAMPLE,
        directory / "templates" / ".gitkeep": "",
        directory / ".gitignore": GITIGNORE,
    }
    existing = [p for p in files if p.exists()]
    if existing:
        raise NewsletterError(
            f"{existing[0]}: already exists; init never overwrites files",
            hint="choose an empty or new directory")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(files)
