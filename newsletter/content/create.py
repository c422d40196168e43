"""Create a new issue file from a template, never overwriting an existing one."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from newsletter import clock
from newsletter.config import Config
from newsletter.content.frontmatter import is_single_line
from newsletter.content.issues import is_web_url
from newsletter.errors import ContentError

MAX_SLUG = 60
BODY = "Write the summary here. Markdown works: **bold**, [links](https://example.com), tables.\n"


def _file_slug(title: str) -> str:
    """A readable ASCII file-name slug; a title with no ASCII words gives "issue"."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    if len(slug) > MAX_SLUG:
        slug = slug[:MAX_SLUG].rsplit("-", 1)[0]
    return slug or "issue"


def create_issue(
    config: Config,
    title: str,
    *,
    url: str | None = None,
    when: datetime | None = None,
    tags: Iterable[str] = (),
) -> Path:
    """Write ``issues/<YYYY>/<YYYY-MM-DD>-<slug>.md`` and return its path.

    ``when`` (default: now) is written in the newsletter's time zone; an existing file is never
    overwritten: ``-2``, ``-3`` … is appended instead.
    """
    title = title.strip()
    tag_list = [t.strip() for t in tags if t.strip()]
    for name, value in [("title", title), ("url", url or "")] + [("tags", t) for t in tag_list]:
        if not is_single_line(value):
            raise ContentError(f"{name} must be a single line, not {value!r}")
    if not title:
        raise ContentError("title must not be empty")
    if url and not is_web_url(url):
        raise ContentError(f"url must be an absolute http(s) URL, not {url!r}")
    tz = config.newsletter.tz
    when = clock.now() if when is None else when
    when = when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)
    when = when.replace(microsecond=0)
    text = _dump({"title": title}) + f"date: {when.isoformat()}\n"
    if url:
        text += _dump({"url": url})
    if tag_list:
        text += _dump({"tags": tag_list})
    text = f"---\n{text}---\n\n{BODY}"
    folder = config.root / config.build.issues_dir / f"{when:%Y}"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{when:%Y-%m-%d}-{_file_slug(title)}"
    for n in range(1, 10_000):
        path = folder / (f"{stem}.md" if n == 1 else f"{stem}-{n}.md")
        try:
            with path.open("x", encoding="utf-8", newline="\n") as fh:  # "x": never overwrite
                fh.write(text)
        except FileExistsError:
            continue
        return path
    raise ContentError(f"too many issues named {stem}*.md in {folder}")


def _dump(value: dict[str, Any]) -> str:
    """One ``key: value`` line, quoted by PyYAML so titles like ``no`` or ``1.10`` stay strings.

    Flow style is used for lists only (``tags: [llm, 'no']``); PyYAML would otherwise write a
    mapping of scalars in flow style too (``{title: x}``).
    """
    lists = any(isinstance(v, list) for v in value.values())
    return yaml.safe_dump(
        value,
        allow_unicode=True,
        sort_keys=False,
        width=1_000_000,
        default_flow_style=None if lists else False,
    )
