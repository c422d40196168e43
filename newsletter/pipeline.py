"""The pipeline as plain functions: load → group → render → publish, shared by every command."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter import clock
from newsletter.config import Config
from newsletter.content import IssueCache, load_issues, load_notes
from newsletter.editions import Grouping, group, load_lock, save_lock
from newsletter.errors import NewsletterError, PublishError
from newsletter.models import Edition, RenderedEdition
from newsletter.publish.feeds import ATOM_FILE, JSON_FEED_FILE, RSS_FILE, build_feeds
from newsletter.publish.lock import build_lock
from newsletter.publish.writer import SiteWriter
from newsletter.render import Renderer
from newsletter.render.cache import RenderCache, edition_key, index_key
from newsletter.render.env import templates_digest

FEED_FILES = (RSS_FILE, ATOM_FILE, JSON_FEED_FILE)


@dataclass
class BuildReport:
    """What a build did, for the CLI summary and the tests."""

    out: Path
    editions: int = 0
    rendered: list[int] = field(default_factory=list)  # written, rendered by this build
    cached: int = 0  # written from the render cache (e.g. rendered by `check` or `preview`)
    reused: int = 0  # unchanged: the previous build's files kept
    up_to_date: bool = False
    files_written: int = 0
    files_linked: int = 0


def load_and_group(
    config: Config, *, drafts: bool = False, now: datetime | None = None, use_cache: bool = True
) -> Grouping:
    """Stages load and group: every issue file and note, then editions with stable numbers."""
    cache = (
        IssueCache(config.state_dir / "cache" / "issues.pickle", config.digest)
        if use_cache
        else None
    )
    issues = load_issues(config, cache=cache)
    notes = load_notes(config)
    return group(
        issues, config, now=now or clock.now(), notes=notes, drafts=drafts, lock=load_lock(config)
    )


class EditionRenderer:
    """Renders editions through the cache; one instance per build/preview/send."""

    def __init__(self, config: Config, grouping: Grouping) -> None:
        self.config = config
        self.editions = list(grouping.editions)
        self.renderer = Renderer(config)
        self.cache = RenderCache(config.state_dir / "cache" / "render")
        self.templates = templates_digest(config)
        self.keys: dict[int, str] = {}
        for i, ed in enumerate(self.editions):
            prev = self.editions[i - 1] if i else None
            nxt = self.editions[i + 1] if i + 1 < len(self.editions) else None
            self.keys[ed.number] = edition_key(config.digest, self.templates, ed, prev, nxt)
        self.rendered_now: list[int] = []

    def neighbours(self, edition: Edition) -> tuple[Edition | None, Edition | None]:
        i = self.editions.index(edition)
        return (
            self.editions[i - 1] if i else None,
            self.editions[i + 1] if i + 1 < len(self.editions) else None,
        )

    def render(self, edition: Edition) -> RenderedEdition:
        key = self.keys[edition.number]
        cached = self.cache.get(edition, key)
        if cached is not None:
            return cached
        rendered = self.renderer.render(edition, *self.neighbours(edition))
        self.cache.put(key, rendered)
        self.rendered_now.append(edition.number)
        return rendered


def site_assets(config: Config) -> list[tuple[str, Path]]:
    """Files copied verbatim: non-Markdown files under issues/ → assets/, static/ → /."""
    found: list[tuple[str, Path]] = []
    issues_dir = config.root / config.build.issues_dir
    for path in sorted(issues_dir.rglob("*")) if issues_dir.is_dir() else []:
        if path.suffix == ".md":
            continue  # most files are issues: skip them before paying a stat() each
        rel = path.relative_to(issues_dir)
        if path.is_file() and not any(p.startswith((".", "_")) for p in rel.parts):
            found.append(("assets/" + rel.as_posix(), path))
    static = config.root / "static"
    for path in sorted(static.rglob("*")) if static.is_dir() else []:
        rel = path.relative_to(static)
        if path.is_file() and not any(p.startswith(".") for p in rel.parts):
            found.append((rel.as_posix(), path))
    return found


def _manifest_path(config: Config, out: Path) -> Path:
    tag = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:16]
    return config.state_dir / "cache" / f"build-{tag}.json"


def _refuse_project_folders(config: Config, out: Path) -> None:
    """The output folder is replaced wholesale on every build: it must not be (or contain) the
    project or one of its inputs, or `build --out .` would delete config.toml and issues/."""
    inputs = (
        config.root,
        config.root / config.build.issues_dir,
        config.root / config.editions.notes_dir,
        config.root / config.build.templates_dir,
        config.state_dir,
        config.root / "static",
    )
    for folder in (p.resolve() for p in inputs):
        if out == folder or out in folder.parents:
            raise PublishError(
                f"{out}: cannot build here: every build replaces this folder "
                f"whole, which would delete {folder}",
                hint="build into a folder of its own, such as public/ ([build] out or --out)",
            )


def build(
    config: Config,
    *,
    out: Path | None = None,
    drafts: bool = False,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build the whole site into ``out`` atomically, re-rendering only what changed.

    Builds of one ``out`` take turns (the scheduler's and a manual one, say): each reads the
    previous build's manifest and replaces the folder, so overlapping them would mix two trees.
    """
    out = (out or config.out_dir).resolve()
    _refuse_project_folders(config, out)
    with build_lock(config.state_dir, out, on_wait=on_wait or progress):
        return _build_locked(config, out, drafts, now, progress)


def _build_locked(
    config: Config,
    out: Path,
    drafts: bool,
    now: datetime | None,
    progress: Callable[[str], None] | None,
) -> BuildReport:
    report = BuildReport(out=out)
    grouping = load_and_group(config, drafts=drafts, now=now)
    editions = list(grouping.editions)
    report.editions = len(editions)
    er = EditionRenderer(config, grouping)
    assets = site_assets(config)
    asset_sig = {
        rel: [st.st_size, st.st_mtime_ns] for rel, st in ((rel, p.stat()) for rel, p in assets)
    }
    manifest_path = _manifest_path(config, out)
    previous = _read_manifest(manifest_path)
    _refuse_foreign_folder(out, previous)
    digest = hashlib.sha256(
        json.dumps(
            [config.digest, er.templates, drafts, sorted(er.keys.items()), asset_sig],
            sort_keys=True,
        ).encode()
    ).hexdigest()
    old_editions: dict[str, str] = previous.get("editions", {})
    files = [
        f"editions/{e.number}/{name}"
        for e in editions
        for name in ("index.html", "email.html", "email.txt")
    ]
    if previous.get("digest") == digest and all((out / f).is_file() for f in files):
        report.up_to_date = True
        report.reused = len(editions)
        save_lock(config, grouping)
        return report

    feed_window = sorted(editions, key=lambda e: (e.date, e.number))[-config.build.feed_limit :]
    index = index_key(config.digest, er.templates, editions)
    feeds = hashlib.sha256(
        json.dumps([config.digest, [er.keys[e.number] for e in feed_window]]).encode()
    ).hexdigest()
    with SiteWriter(out) as site:
        for ed in editions:
            base = f"editions/{ed.number}/"
            key = er.keys[ed.number]
            if old_editions.get(str(ed.number)) == key and all(
                site.reuse(base + n) for n in ("index.html", "email.html", "email.txt")
            ):
                report.reused += 1
                continue
            renders_before = len(er.rendered_now)
            rendered = er.render(ed)
            if len(er.rendered_now) > renders_before:
                report.rendered.append(ed.number)
            else:
                report.cached += 1
            site.write(base + "index.html", rendered.web_html)
            site.write(base + "email.html", rendered.email_html)
            site.write(base + "email.txt", rendered.email_text)
            if progress:
                progress(f"rendered edition {ed.number}: {ed.title}")
        # The index and the feeds are reused like editions when their inputs are unchanged:
        # an edit to one issue's body changes neither the index nor a feed it is not in.
        if previous.get("index") != index or not site.reuse("index.html"):
            site.write("index.html", er.renderer.render_index(editions))
        if previous.get("feeds") != feeds or not all(site.reuse(n) for n in FEED_FILES):
            for name, data in build_feeds(config, [er.render(e) for e in feed_window]).items():
                site.write(name, data)
        old_assets: dict[str, list[int]] = previous.get("assets", {})
        for rel, path in assets:
            if old_assets.get(rel) != asset_sig[rel] or not site.reuse(rel):
                site.copy(path, rel)
        site.commit()
        report.files_written, report.files_linked = site.written, site.linked
    report.rendered.sort()
    save_lock(config, grouping)
    _write_manifest(
        manifest_path,
        {
            "digest": digest,
            "assets": asset_sig,
            "index": index,
            "feeds": feeds,
            "editions": {str(k): v for k, v in er.keys.items()},
        },
    )
    return report


def _refuse_foreign_folder(out: Path, previous: dict[str, Any]) -> None:
    """A build replaces ``out`` wholesale: never do that to a folder it did not write."""
    if previous or not out.is_dir() or (out / "feed.xml").is_file():
        return
    if any(out.iterdir()):
        raise PublishError(
            f"{out}: exists, is not empty and was not written by a build; refusing to replace it",
            hint="choose a new or empty folder with --out, or [build] out",
        )


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_manifest(path: Path, data: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # without a manifest the next build simply renders everything again


def find_edition(grouping: Grouping, number: int) -> Edition:
    edition = grouping.by_number(number)
    if edition is None:
        known = ", ".join(str(e.number) for e in grouping.editions) or "none"
        raise NewsletterError(
            f"edition {number} does not exist",
            hint=f"editions: {known} (see `newsletter editions`)",
        )
    return edition


def render_edition(config: Config, grouping: Grouping, number: int) -> RenderedEdition:
    """Render one edition through the same path and cache as build (used by send and preview)."""
    return EditionRenderer(config, grouping).render(find_edition(grouping, number))


__all__: Sequence[str] = [
    "BuildReport",
    "EditionRenderer",
    "build",
    "find_edition",
    "load_and_group",
    "render_edition",
]
