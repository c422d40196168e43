"""Stage "load": issue files and edition notes → Issues and EditionNotes, every problem at once."""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from newsletter.config import Config
from newsletter.content.cache import IssueCache
from newsletter.content.frontmatter import FrontMatter, decode, split
from newsletter.content.markdown import absolute_url, render_markdown
from newsletter.errors import Problem, located
from newsletter.models import EditionNote, Issue

ISSUE_KEYS = (
    "title",
    "date",
    "url",
    "authors",
    "venue",
    "year",
    "code",
    "tags",
    "image",
    "summary",
    "edition",
    "section",
    "draft",
    "slug",
)
NOTE_KEYS = ("subject", "preheader", "title")
_SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_BAD_SCHEMES = ("javascript", "vbscript", "data", "file")


def _read(path: Path) -> bytes:
    """Read one file (a seam for tests that count reads)."""
    return path.read_bytes()


def _project_path(config: Config, directory: Path) -> str:
    """``directory`` relative to the project root, POSIX, "" for the root itself."""
    rel = Path(os.path.relpath(directory, config.root)).as_posix()
    return "" if rel == "." else rel + "/"


def find_issue_files(issues_dir: Path) -> list[str]:
    """Every ``*.md`` under ``issues_dir`` as sorted POSIX paths; ``.``/``_`` names are skipped."""
    found: list[str] = []
    for top, dirs, files in os.walk(issues_dir):
        dirs[:] = [d for d in dirs if not d.startswith((".", "_"))]
        rel = Path(os.path.relpath(top, issues_dir)).as_posix()
        prefix = "" if rel == "." else rel + "/"
        found.extend(
            prefix + f for f in files if f.endswith(".md") and not f.startswith((".", "_"))
        )
    return sorted(found)


def derive_slug(stem: str, when: datetime | None) -> str:
    """A URL slug from a file stem: lowercase ASCII words joined by hyphens.

    Characters with no ASCII form (a Chinese file name) are replaced by a short stable hash of
    the stem, after the date when nothing ASCII is left, so two such files never collide.
    """
    stem = unicodedata.normalize("NFC", stem)  # macOS may hand us NFD names
    decomposed = unicodedata.normalize("NFKD", stem)
    slug = re.sub(r"[^a-z0-9]+", "-", decomposed.encode("ascii", "ignore").decode().lower())
    slug = slug.strip("-")
    if not any(ch.isalnum() and not ch.isascii() for ch in decomposed):
        return slug or "issue"
    tag = hashlib.sha256(stem.encode()).hexdigest()[:8]
    if slug:
        return f"{slug}-{tag}"
    return f"{when:%Y-%m-%d}-{tag}" if when else tag


def _asset_base(base_url: str, directory: str) -> str:
    return base_url + "assets/" + (quote(directory) + "/" if directory else "")


def parse_issue(
    data: bytes,
    path: str,
    *,
    directory: str,
    tz: ZoneInfo,
    base_url: str,
    problems: list[Problem],
    digest: str | None = None,
) -> Issue | None:
    """Parse one issue file; on failure return None with the problems recorded.

    ``directory`` is the file's folder relative to the issues dir ("" at the top): its assets
    are published under ``<base_url>assets/<directory>/``.
    """
    before = len(problems)
    text = decode(data, path, problems)
    part = split(text, path, problems) if text is not None else None
    fm = FrontMatter.parse(part, path, problems) if part is not None else None
    if part is None or fm is None:
        return None
    asset_base = _asset_base(base_url, directory)
    title = fm.text("title", required=True)
    date = fm.when("date", tz)
    slug = fm.text("slug")
    if slug is not None and not _SLUG.fullmatch(slug):
        problems.append(
            Problem(
                path,
                fm.line("slug"),
                f"slug: use lowercase ASCII letters, digits and single hyphens, not {slug!r}",
            )
        )
    if slug is None:
        slug = derive_slug(path.rsplit("/", 1)[-1].removesuffix(".md"), date)
    fields: dict[str, Any] = dict(
        _links(fm, asset_base, base_url),
        authors=fm.texts("authors"),
        venue=fm.text("venue"),
        year=fm.whole("year", 1, 9999),
        tags=fm.texts("tags"),
        summary=fm.text("summary", multiline=True),
        edition=fm.whole("edition", 1),
        section=fm.text("section"),
        draft=fm.flag("draft"),
    )
    extra = {key: fm.value(key) for key in fm.nodes if key not in ISSUE_KEYS}
    if len(problems) > before or title is None or date is None:
        return None
    body_html = render_markdown(
        part.body, asset_base=asset_base, site_base=base_url, id_prefix=slug + "-"
    ).strip()
    digest = digest or hashlib.sha256(data).hexdigest()
    return Issue(
        path=path,
        slug=slug,
        title=title,
        date=date,
        body_html=body_html,
        digest=digest,
        extra=extra,
        lines=dict(fm.lines),
        **fields,
    )


def _scheme(url: str) -> str | None:
    """The lowercased scheme ("" if relative), or None if the URL cannot be parsed at all."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[" (a malformed IPv6 host)
        return None
    return parts.scheme.lower()


def is_web_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def _links(fm: FrontMatter, asset_base: str, base_url: str) -> dict[str, str | None]:
    """url (absolute http(s)), code (free text, but never a script link), image (made absolute).

    They end up in href/src attributes of templates, so dangerous schemes are refused here.
    """
    problem = fm.problems.append
    url = fm.text("url")
    if url is not None and not is_web_url(url):
        problem(
            Problem(fm.path, fm.line("url"), f"url: must be an absolute http(s) URL, not {url!r}")
        )
    code = fm.text("code")
    scheme = _scheme(code) if code is not None else ""
    if code is not None and (
        scheme is None
        or scheme in _BAD_SCHEMES
        or ("://" in code and scheme not in ("http", "https"))
    ):
        problem(Problem(fm.path, fm.line("code"), f"code: not a safe link: {code!r}"))
    image = fm.text("image")
    if image is not None:
        image_url = absolute_url(image, asset_base=asset_base, site_base=base_url)
        if image_url is None:
            problem(
                Problem(
                    fm.path,
                    fm.line("image"),
                    f"image: must be a relative path or an http(s) URL, not {image!r}",
                )
            )
        image = image_url
    return {"url": url, "code": code, "image": image}


def load_issues(
    config: Config, *, drafts: bool = True, cache: IssueCache | None = None
) -> list[Issue]:
    """Load every issue file, sorted by (date, slug); raise one ContentError listing all problems.

    ``drafts=False`` leaves out issues marked ``draft: true`` (they are still checked). With a
    ``cache``, unchanged files are not read at all; the cache is saved if anything changed.
    """
    issues_dir = config.root / config.build.issues_dir
    prefix = _project_path(config, issues_dir)
    tz, base_url = config.newsletter.tz, config.base_url
    problems: list[Problem] = []
    issues: list[Issue] = []
    keys: list[str] = []
    for rel in find_issue_files(issues_dir):
        key = prefix + rel
        keys.append(key)
        issue = _load_file(
            issues_dir / rel, key, rel.rpartition("/")[0], tz, base_url, cache, problems
        )
        if issue is not None:
            issues.append(issue)
    if cache is not None:
        cache.retain(keys)
        cache.save()
    _check_slugs(issues, problems)
    if problems:
        raise located(problems, "issue files")
    issues.sort(key=lambda i: (i.date, i.slug))
    return [i for i in issues if drafts or not i.draft]


def _load_file(
    file: Path,
    key: str,
    directory: str,
    tz: ZoneInfo,
    base_url: str,
    cache: IssueCache | None,
    problems: list[Problem],
) -> Issue | None:
    """One issue file through the cache: stat first, read only if the stat changed."""
    try:
        stat = file.stat()  # before reading, so a write racing with us is seen next time
        if cache is not None:
            cached = cache.by_stat(key, stat.st_size, stat.st_mtime_ns)
            if cached is not None:
                return cached
        data = _read(file)
    except OSError as exc:
        problems.append(Problem(key, None, f"cannot be read: {exc.strerror or exc}"))
        return None
    digest = hashlib.sha256(data).hexdigest()
    issue = cache.by_digest(key, digest) if cache is not None else None
    if issue is None:
        issue = parse_issue(
            data,
            key,
            directory=directory,
            tz=tz,
            base_url=base_url,
            problems=problems,
            digest=digest,
        )
    if issue is not None and cache is not None:
        cache.put(key, stat.st_size, stat.st_mtime_ns, digest, issue)
    return issue


def _check_slugs(issues: list[Issue], problems: list[Problem]) -> None:
    """Two issues with one slug would overwrite each other's page: name both files."""
    first: dict[str, str] = {}
    for issue in sorted(issues, key=lambda i: i.path):
        if issue.slug in first:
            problems.append(
                Problem(
                    issue.path,
                    issue.lines.get("slug", 1),
                    f"duplicate slug {issue.slug!r}: {first[issue.slug]} has it too "
                    "(set a different `slug:` in one of them)",
                )
            )
        else:
            first[issue.slug] = issue.path


def load_notes(config: Config) -> dict[str, EditionNote]:
    """Load ``<notes_dir>/<key>.md`` edition notes by key; raise one ContentError for all problems.

    Front matter is optional and may set ``subject``, ``preheader`` and ``title``.
    """
    notes_dir = config.root / config.editions.notes_dir
    if not notes_dir.is_dir():
        return {}
    prefix = _project_path(config, notes_dir)
    base_url = config.base_url
    problems: list[Problem] = []
    notes: dict[str, EditionNote] = {}
    for file in sorted(notes_dir.iterdir()):
        if file.suffix != ".md" or file.name.startswith((".", "_")) or not file.is_file():
            continue
        path = prefix + file.name
        try:
            data = _read(file)
        except OSError as exc:
            problems.append(Problem(path, None, f"cannot be read: {exc.strerror or exc}"))
            continue
        note = parse_note(data, path, key=file.stem, base_url=base_url, problems=problems)
        if note is not None:
            notes[note.key] = note
    if problems:
        raise located(problems, "edition notes")
    return notes


def parse_note(
    data: bytes, path: str, *, key: str, base_url: str, problems: list[Problem]
) -> EditionNote | None:
    """Parse one edition note; on failure return None with the problems recorded."""
    before = len(problems)
    text = decode(data, path, problems)
    part = split(text, path, problems, required=False) if text is not None else None
    fm = FrontMatter.parse(part, path, problems) if part is not None else None
    if part is None or fm is None:
        return None
    for name in fm.nodes:
        if name not in NOTE_KEYS:
            close = difflib.get_close_matches(name, NOTE_KEYS, n=1)
            known = ", ".join(NOTE_KEYS)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {known})"
            problems.append(Problem(path, fm.line(name), f"{name}: unknown key{hint}"))
    subject, preheader, title = (fm.text(name) for name in NOTE_KEYS)
    if len(problems) > before:
        return None
    anchor = re.sub(r"[^A-Za-z0-9]+", "-", key).strip("-").lower()
    intro = render_markdown(
        part.body, asset_base=base_url + "assets/", site_base=base_url, id_prefix=f"note-{anchor}-"
    )
    return EditionNote(
        path=path,
        key=key,
        intro_html=intro.strip(),
        subject=subject,
        preheader=preheader,
        title=title,
        digest=hashlib.sha256(data).hexdigest(),
    )
