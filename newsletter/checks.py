"""`newsletter check`: validate everything and lint each edition before it embarrasses a sender."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from pathlib import PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from newsletter import clock
from newsletter.config import CONFIG_NAME, Config
from newsletter.errors import NewsletterError, Problem, TemplateError
from newsletter.models import UNSUBSCRIBE_PLACEHOLDER, Edition, Issue, RenderedEdition

if TYPE_CHECKING:
    from newsletter.editions import Grouping

GMAIL_CLIP_BYTES = 102 * 1024
MAX_SUBJECT = 80
SITE_FILES = ("", "index.html", "feed.xml", "atom.xml", "feed.json")  # what build always writes
_EDITION_PAGE = re.compile(r"editions/(\d+)/(?:index\.html|email\.html|email\.txt)?")
# Jinja2 left unrendered, merge tags of other tools, MJML that mrml never compiled.
_TEMPLATE_TEXT = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\*\|[A-Z0-9_:]+\|\*|</?mj-[a-z-]+")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "0.0.0.0", "::1")
_NOT_LINKS = ("mailto:", "tel:")


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


@dataclass(frozen=True)
class SiteFacts:
    """What a build publishes (to judge internal links) and the drafts each edition leaves out."""

    editions: frozenset[int]  # numbers of editions with a published page
    files: frozenset[str]  # site-relative paths copied verbatim: assets/…, static files
    drafts: Mapping[str, tuple[Issue, ...]] = field(default_factory=dict)  # by edition key


def site_facts(config: Config, grouping: Grouping) -> SiteFacts:
    """Facts from a grouping made with ``drafts=True`` (so draft issues are visible)."""
    from newsletter.pipeline import site_assets  # the build's own list, so both always agree

    drafts = {e.key: tuple(i for i in e.issues if i.draft) for e in grouping.editions}
    return SiteFacts(
        editions=frozenset(e.number for e in grouping.editions if not e.draft),
        files=frozenset(rel for rel, _ in site_assets(config)),
        drafts={k: v for k, v in drafts.items() if v},
    )


def next_to_send(editions: Iterable[Edition]) -> int | None:
    """The edition `send` would mail next: the newest one that is closed and not all drafts."""
    ready = [e.number for e in editions if not e.draft]
    return max(ready) if ready else None


class _Html(HTMLParser):
    """Links, images, ids and the text a reader sees (code and preformatted text excluded)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[str, str | None]] = []
        self.ids: set[str] = set()
        self.prose: list[str] = []
        self.code: list[str] = []
        self._in_code = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key) and (key == "id" or tag == "a"):
                self.ids.add(a[key] or "")
        if tag == "a" and a.get("href"):
            self.links.append(a["href"] or "")
        elif tag == "img":
            self.images.append((a.get("src") or "", a.get("alt")))
        elif tag in ("code", "pre"):
            self._in_code += 1
        if tag.startswith("mj-"):
            self.prose.append(f"<{tag}")
        self.prose.extend(v for k, v in attrs if v and k in ("href", "src", "alt", "title"))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("code", "pre") and self._in_code:
            self._in_code -= 1

    def handle_data(self, data: str) -> None:
        (self.code if self._in_code else self.prose).append(data)


class _Sources:
    """Names the file a piece of output came from: an issue, the edition note, or a template."""

    def __init__(self, config: Config, edition: Edition) -> None:
        self.config = config
        self.edition = edition

    def template(self, name: str) -> str:
        from newsletter.render.env import display_path, template_dirs

        for base in template_dirs(self.config):
            if (base / name).is_file():
                return display_path(self.config, str(base / name), name)
        return name

    def find(self, snippet: str, template: str = "email.mjml.j2") -> tuple[str, int | None]:
        ed = self.edition
        variants = [snippet, html.escape(snippet), unquote(snippet)]
        tail = PurePosixPath(urlsplit(snippet).path).name if "/" in snippet else ""
        for issue in ed.issues:
            fields = (issue.body_html, issue.url or "", issue.code or "", issue.image or "")
            if any(v in f for v in variants for f in fields):
                return issue.path, self._line(issue.path, [*variants, tail])
        if ed.note_path and any(v in ed.intro_html for v in variants):
            return ed.note_path, self._line(ed.note_path, [*variants, tail])
        path = self.template(template)
        return path, self._line(path, variants)

    def _line(self, rel: str, needles: Sequence[str]) -> int | None:
        try:
            # Lines as an editor counts them: str.splitlines() would also break at \x1c-\x1e,
            # \x85 and U+2028, and name a line further down than the one the user sees.
            lines = re.split(r"\r\n|\r|\n", (self.config.root / rel).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        for needle in (n for n in needles if n):
            for number, text in enumerate(lines, 1):
                if needle in text:
                    return number
        return None


def lint_edition(
    config: Config,
    rendered: RenderedEdition,
    result: CheckResult,
    now: datetime,
    *,
    sending: bool = True,
    site: SiteFacts | None = None,
) -> None:
    """Warnings and errors for one rendered edition, each naming the edition and the file.

    ``sending`` adds the checks that matter only for an edition about to go out (draft and
    future-dated issue files); ``send`` always lints that way. ``site`` is computed when
    not given.
    """
    ed = rendered.edition
    label = f"edition {ed.number}"
    sources = _Sources(config, ed)
    parsed = _Html()
    parsed.feed(rendered.email_html)
    parsed.close()
    _lint_envelope(config, rendered, result, sources, parsed)
    _lint_template_text(rendered, result, sources, parsed, label)
    if site is None:
        from newsletter.pipeline import load_and_group

        site = site_facts(config, load_and_group(config, drafts=True, now=now))
    _lint_links(config, rendered, result, sources, parsed, site)
    if sending:
        _lint_sending(ed, result, now, site)


def _largest_part(config: Config, ed: Edition) -> tuple[str, int]:
    """The file that adds the most HTML to the edition (an issue, or the edition's note)."""
    parts = [(len(i.body_html.encode("utf-8")), i.path) for i in ed.issues]
    if ed.note_path:
        parts.append((len(ed.intro_html.encode("utf-8")), ed.note_path))
    if not parts:
        return config.build.issues_dir, 0
    size, path = max(parts, key=lambda p: (p[0], p[1]))
    return path, size


def _lint_envelope(
    config: Config, rendered: RenderedEdition, result: CheckResult, sources: _Sources, parsed: _Html
) -> None:
    ed = rendered.edition
    label = f"edition {ed.number}"
    size = len(rendered.email_html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        where, part = _largest_part(config, ed)
        result.add(
            "warning",
            where,
            None,
            f"{label}: email HTML is {size / 1024:.0f} KB; Gmail clips messages over 102 KB "
            f"(the largest part is this file, {part / 1024:.0f} KB of it: shorten it or move it "
            "to another edition)",
        )
    if len(ed.subject) > MAX_SUBJECT:
        result.add(
            "warning",
            ed.note_path or CONFIG_NAME,
            None,
            f"{label}: subject is {len(ed.subject)} characters (over {MAX_SUBJECT}; "
            "inboxes cut it off)",
        )
    if not ed.preheader.strip():
        result.add("warning", ed.note_path or CONFIG_NAME, None, f"{label}: no preheader")
    if not ed.issues:
        empty_at = ed.note_path or config.build.issues_dir
        result.add("error", empty_at, None, f"{label}: edition is empty")
    if UNSUBSCRIBE_PLACEHOLDER not in parsed.links:
        result.add(
            "error",
            sources.template("email.mjml.j2"),
            None,
            f"{label}: the email HTML has no unsubscribe link "
            '(<a href="{{ unsubscribe_url }}">)',
        )
    if UNSUBSCRIBE_PLACEHOLDER not in rendered.email_text:
        result.add(
            "error",
            sources.template("email.txt.j2"),
            None,
            f"{label}: the plain-text part has no unsubscribe link ({{{{ unsubscribe_url }}}})",
        )


def _lint_template_text(
    rendered: RenderedEdition, result: CheckResult, sources: _Sources, parsed: _Html, label: str
) -> None:
    """Template syntax a reader would see; code samples about templates are left alone."""
    code = "".join(parsed.code)
    leftovers = [
        ("email HTML", "email.mjml.j2", m.group(0))
        for m in _TEMPLATE_TEXT.finditer("\n".join(parsed.prose))
    ]
    leftovers += [
        ("plain-text part", "email.txt.j2", m.group(0))
        for m in _TEMPLATE_TEXT.finditer(rendered.email_text)
        if m.group(0) not in code
    ]
    seen: set[str] = set()
    for part, template, text in leftovers:
        if text == UNSUBSCRIBE_PLACEHOLDER or text in seen:
            continue
        seen.add(text)
        path, line = sources.find(text, template)
        result.add(
            "error", path, line, f"{label}: unresolved template text in the {part}: {text[:60]!r}"
        )


def _lint_links(
    config: Config,
    rendered: RenderedEdition,
    result: CheckResult,
    sources: _Sources,
    parsed: _Html,
    site: SiteFacts,
) -> None:
    ed = rendered.edition
    label = f"edition {ed.number}"
    for src, alt in parsed.images:
        if not (alt or "").strip():
            path, line = sources.find(src)
            result.add("warning", path, line, f"{label}: image without alt text: {src}")
    checked: set[str] = set()
    targets = [("link", u) for u in parsed.links] + [("image", s) for s, _ in parsed.images]
    for kind, url in targets:
        if url in checked or url == UNSUBSCRIBE_PLACEHOLDER or url.startswith(_NOT_LINKS):
            continue
        checked.add(url)
        level, problem = _judge(config, url, kind, ed, parsed.ids, site, rendered.web_html)
        if problem:
            path, line = sources.find(url)
            result.add(level, path, line, f"{label}: {problem}: {url}")


def _judge(
    config: Config, url: str, kind: str, ed: Edition, ids: set[str], site: SiteFacts, web_html: str
) -> tuple[str, str | None]:
    """(level, what is wrong with one URL in the email) or (_, None) when it is fine."""
    if url.startswith("#"):
        if unquote(url[1:]) not in ids:
            return "warning", "broken anchor (no element in the email has this id)"
        return "", None
    parts = urlsplit(url)
    if not parts.scheme:
        return "error", f"relative {kind} (a mail client has no page to resolve it against)"
    if parts.scheme not in ("http", "https"):
        return "error", f"{kind} that is not a web address"
    host = (parts.hostname or "").lower()
    if host in _LOCAL_HOSTS or host.endswith((".local", ".localhost")):
        return "error", f"{kind} on a local address"
    base = config.base_url
    if not url.startswith(base) or url.startswith(config.unsubscribe_prefix):
        return "", None
    rel = unquote(urlsplit(url[len(base) :]).path)
    page = _EDITION_PAGE.fullmatch(rel)
    if page:
        number = int(page.group(1))
        if number != ed.number and number not in site.editions:
            return "error", f"broken internal {kind} (there is no edition {number})"
        if number == ed.number and parts.fragment and f'id="{parts.fragment}"' not in web_html:
            return "warning", f"broken anchor (#{parts.fragment} is not on the archive page)"
        return "", None
    owned = rel in SITE_FILES or rel.startswith(("editions/", "assets/"))
    if owned and rel not in SITE_FILES and rel not in site.files:
        return "error", f"broken internal {kind} (the build does not publish this page or file)"
    return "", None  # other paths may be served by another part of the site


def _lint_sending(ed: Edition, result: CheckResult, now: datetime, site: SiteFacts) -> None:
    label = f"edition {ed.number}"
    members = {i.path for i in ed.issues}
    for issue in ed.issues:
        if issue.draft:
            result.add(
                "warning",
                issue.path,
                issue.lines.get("draft"),
                f"{label}: issue is still a draft in an edition about to be sent",
            )
        if issue.date > now:
            result.add(
                "warning",
                issue.path,
                issue.lines.get("date"),
                f"{label}: issue is dated in the future ({issue.date.isoformat()})",
            )
    for issue in site.drafts.get(ed.key, ()):
        if issue.path not in members:
            result.add(
                "warning",
                issue.path,
                issue.lines.get("draft"),
                f"{label}: issue is still a draft, so the edition goes out without it",
            )


def run_checks(config: Config, *, drafts: bool = False, now: datetime | None = None) -> CheckResult:
    """Load, group and render every edition; collect every finding (template errors too).

    The draft and future-date checks apply to the edition `send` would mail next only, so a
    draft kept for later does not fail ``check --strict`` forever.
    """
    from newsletter.pipeline import EditionRenderer, load_and_group

    now = now or clock.now()
    result = CheckResult()
    grouping = load_and_group(config, drafts=drafts, now=now)
    everything = grouping if drafts else load_and_group(config, drafts=True, now=now)
    site = site_facts(config, everything)
    upcoming = next_to_send(grouping.editions)
    result.editions = len(grouping.editions)
    result.issues = sum(len(e.issues) for e in grouping.editions)
    er = EditionRenderer(config, grouping)
    for edition in grouping.editions:
        try:
            rendered = er.render(edition)
        except TemplateError as exc:
            _template_findings(config, edition, exc, result)
            continue
        except NewsletterError:
            raise
        lint_edition(config, rendered, result, now, sending=edition.number == upcoming, site=site)
    return result


def _template_findings(
    config: Config, edition: Edition, exc: TemplateError, result: CheckResult
) -> None:
    if exc.problems:
        for p in exc.problems:
            result.add("error", p.path, p.line, p.message)
        return
    # The renderer raises the missing-unsubscribe error without a location: name the template.
    name = "email.txt.j2" if "email text" in exc.message else "email.mjml.j2"
    message = (
        exc.message
        if exc.message.startswith("edition")
        else f"edition {edition.number}: {exc.message}"
    )
    result.add("error", _Sources(config, edition).template(name), None, message)
