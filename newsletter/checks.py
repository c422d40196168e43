"""`newsletter check`: validate everything and lint each edition before it embarrasses a sender."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from urllib.parse import urlsplit

from newsletter import clock
from newsletter.config import Config
from newsletter.errors import NewsletterError, Problem, TemplateError
from newsletter.models import Edition, RenderedEdition

GMAIL_CLIP_BYTES = 102 * 1024
MAX_SUBJECT = 80


@dataclass(frozen=True)
class Finding:
    level: str  # "error" | "warning"
    problem: Problem

    def __str__(self) -> str:
        return f"{self.problem} [{self.level}]" if self.level == "warning" else str(self.problem)


@dataclass
class CheckResult:
    findings: list[Finding] = field(default_factory=list)
    editions: int = 0
    issues: int = 0

    def add(self, level: str, path: str, line: int | None, message: str) -> None:
        self.findings.append(Finding(level, Problem(path, line, message)))

    def errors(self, *, strict: bool = False) -> int:
        return sum(1 for f in self.findings if f.level == "error" or strict)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "img":
            self.images.append((a.get("src") or "", a.get("alt")))


def lint_edition(config: Config, rendered: RenderedEdition, result: CheckResult,
                 now: datetime) -> None:
    """Warnings and errors for one rendered edition, each naming the edition and the file."""
    ed: Edition = rendered.edition
    where = ed.note_path or (ed.issues[0].path if ed.issues else config.build.issues_dir)
    label = f"edition {ed.number}"
    size = len(rendered.email_html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        result.add("warning", where, None, f"{label}: email HTML is {size // 1024} KB; "
                   f"Gmail clips messages over 102 KB")
    if len(ed.subject) > MAX_SUBJECT:
        result.add("warning", where, None,
                   f"{label}: subject is {len(ed.subject)} characters (over {MAX_SUBJECT})")
    if not ed.preheader.strip():
        result.add("warning", where, None, f"{label}: no preheader")
    if not ed.issues:
        result.add("error", where, None, f"{label}: edition is empty")
    for part, text in (("email HTML", rendered.email_html), ("email text", rendered.email_text)):
        m = re.search(r"\{\{.*?\}\}|\{%.*?%\}", text)
        if m:
            result.add("error", where, None,
                       f"{label}: unresolved template text in the {part}: {m.group(0)[:60]!r}")
    parser = _Links()
    parser.feed(rendered.email_html)
    for issue in ed.issues:
        if issue.draft:
            result.add("warning", issue.path, issue.lines.get("draft"),
                       f"{label}: issue is a draft")
        if issue.date > now:
            result.add("warning", issue.path, issue.lines.get("date"),
                       f"{label}: issue is dated in the future ({issue.date.isoformat()})")
    for src, alt in parser.images:
        if not alt:
            result.add("warning", where, None, f"{label}: image without alt text: {src}")
    for url in [*parser.links, *(s for s, _ in parser.images)]:
        problem = _bad_url(url)
        if problem:
            result.add("error", where, None, f"{label}: {problem}: {url}")


def _bad_url(url: str) -> str | None:
    if url.startswith(("#", "mailto:")) or url == "*|UNSUB|*":
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return "relative or non-web link"
    host = (parts.hostname or "").lower()
    if host in ("localhost", "127.0.0.1", "0.0.0.0", "::1") or host.endswith(".local"):
        return "link to a local address"
    return None


def run_checks(config: Config, *, drafts: bool = False,
               now: datetime | None = None) -> CheckResult:
    """Load, group and render every edition; collect every finding (template errors too)."""
    from newsletter.pipeline import EditionRenderer, load_and_group

    now = now or clock.now()
    result = CheckResult()
    grouping = load_and_group(config, drafts=drafts, now=now)
    result.editions = len(grouping.editions)
    result.issues = sum(len(e.issues) for e in grouping.editions)
    er = EditionRenderer(config, grouping)
    for edition in grouping.editions:
        try:
            rendered = er.render(edition)
        except TemplateError as exc:
            for p in exc.problems or (Problem("", None, exc.message),):
                result.add("error", p.path, p.line, p.message)
            continue
        except NewsletterError:
            raise
        lint_edition(config, rendered, result, now)
    return result
