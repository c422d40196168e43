"""The preview's view of a project: load → group → render through the pipeline, errors kept."""

from __future__ import annotations

import json
import secrets
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from newsletter import clock
from newsletter.checks import CheckResult, SiteFacts, lint_edition, next_to_send, site_facts
from newsletter.config import CONFIG_NAME, Config, load_config
from newsletter.deliver.message import EditionMessage, PreparedEdition
from newsletter.editions import Grouping
from newsletter.errors import NewsletterError
from newsletter.models import Edition, Issue, RenderedEdition
from newsletter.pipeline import EditionRenderer, load_and_group, site_assets
from newsletter.publish.feeds import JSON_FEED_FILE, build_feeds
from newsletter.render.env import PACKAGE_TEMPLATES
from newsletter.tokens import Signer

SAMPLE_RECIPIENT = "reader@example.org"  # who the previewed message is addressed to


class PreviewFailure(Exception):
    """Something the page shows instead of its content: every ``path:line: message`` line."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def failure(exc: BaseException) -> PreviewFailure:
    """User mistakes as the CLI prints them; anything else is a bug, shown with its traceback."""
    if isinstance(exc, PreviewFailure):
        return exc
    if isinstance(exc, NewsletterError):
        return PreviewFailure(exc.lines())
    detail = traceback.format_exception(exc)
    return PreviewFailure([f"internal error (a bug in newsletter): {exc!r}", *detail])


@dataclass(frozen=True)
class EditionView:
    """Everything the edition page shows, all of it from the same code `build` and `send` use."""

    edition: Edition
    rendered: RenderedEdition
    message: EditionMessage
    feed_item: dict[str, Any]
    checks: CheckResult
    next_to_send: bool


class Snapshot:
    """One consistent load of the project; editions are rendered on first use and memoized."""

    def __init__(self, version: str, config: Config, grouping: Grouping, now: datetime) -> None:
        self.version = version
        self.config = config
        self.grouping = grouping
        self.now = now
        self.renderer = EditionRenderer(config, grouping)
        self.site: SiteFacts = site_facts(config, grouping)
        self.assets: dict[str, Path] = dict(site_assets(config))  # what build copies verbatim
        self.upcoming = next_to_send(grouping.editions)
        self.signer = Signer(secrets.token_bytes(32))  # throwaway: preview tokens mean nothing
        self._views: dict[int, EditionView | PreviewFailure] = {}
        self._lock = threading.RLock()  # renders write the shared cache in .newsletter/

    @property
    def editions(self) -> tuple[Edition, ...]:
        return self.grouping.editions

    def edition(self, number: int) -> EditionView | None:
        """The edition's view, None if there is no such edition; raises PreviewFailure."""
        edition = self.grouping.by_number(number)
        if edition is None:
            return None
        with self._lock:
            if number not in self._views:
                try:
                    self._views[number] = self._view(edition)
                except Exception as exc:  # shown in the page; the server keeps running
                    self._views[number] = failure(exc)
            view = self._views[number]
        if isinstance(view, PreviewFailure):
            raise view
        return view

    def _view(self, edition: Edition) -> EditionView:
        rendered = self.renderer.render(edition)
        prepared = PreparedEdition(self.config, rendered, self.signer, sent_at=self.now)
        feed = json.loads(build_feeds(self.config, [rendered])[JSON_FEED_FILE])
        checks = CheckResult(editions=1, issues=len(edition.issues))
        upcoming = edition.number == self.upcoming
        lint_edition(self.config, rendered, checks, self.now, sending=upcoming, site=self.site)
        return EditionView(
            edition,
            rendered,
            prepared.message(SAMPLE_RECIPIENT),
            feed["items"][0],
            checks,
            upcoming,
        )

    def failures(self) -> list[str]:
        """Render every edition; the error lines of those that fail (for the index page)."""
        lines: list[str] = []
        for edition in self.editions:
            try:
                self.edition(edition.number)
            except PreviewFailure as exc:
                lines.extend(line for line in exc.lines if line not in lines)
        return lines

    def issues(self) -> list[tuple[Issue, Edition]]:
        """Every issue file with the edition it is in, newest first."""
        pairs = [(i, e) for e in self.editions for i in e.issues]
        return sorted(pairs, key=lambda p: (p[0].date, p[0].slug), reverse=True)

    def issue(self, slug: str) -> tuple[Issue, Edition] | None:
        return next(((i, e) for i, e in self.issues() if i.slug == slug), None)

    def render(self, what: Callable[[], str]) -> str:
        """Run one page render of the shared renderer, errors turned into a PreviewFailure."""
        with self._lock:
            try:
                return what()
            except Exception as exc:
                raise failure(exc) from exc

    def feeds(self) -> dict[str, bytes]:
        """The three feeds as `build` writes them (same window, same code)."""
        rendered = [
            v.rendered
            for e in self.editions
            if (v := self.edition(e.number)) is not None and not e.draft
        ]
        return build_feeds(self.config, rendered)


class Project:
    """The project on disk; a new snapshot is made after every change the watcher reports."""

    def __init__(self, root: Path, *, now: Callable[[], datetime] = clock.now) -> None:
        self.root = root.resolve()
        self.now = now
        self._instance = secrets.token_hex(4)  # a restarted server makes open pages reload
        self._changes = 0
        self._snapshot: Snapshot | PreviewFailure | None = None
        self._built_for = ""
        self._config: Config | None = None
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"{self._instance}-{self._changes}"

    def changed(self) -> None:
        """Called by the watcher: the next request loads the project again."""
        with self._lock:
            self._changes += 1

    def snapshot(self) -> Snapshot:
        """The current snapshot, made again if anything changed; raises PreviewFailure."""
        with self._lock:
            version = self.version
            if self._snapshot is None or self._built_for != version:
                self._snapshot = self._load(version)
                self._built_for = version
            snap = self._snapshot
        if isinstance(snap, PreviewFailure):
            raise snap
        return snap

    def _load(self, version: str) -> Snapshot | PreviewFailure:
        try:
            config = load_config(self.root)
            self._config = config
            now = self.now()
            # drafts=True: drafts and the edition still being collected are what one previews.
            grouping = load_and_group(config, drafts=True, now=now)
            return Snapshot(version, config, grouping, now)
        except Exception as exc:
            return failure(exc)

    def watched(self) -> list[Path]:
        """Files and folders whose change means a reload (from the last config that loaded)."""
        c = self._config
        dirs = (
            (c.build.issues_dir, c.editions.notes_dir, c.build.templates_dir, c.editions.lock_file)
            if c
            else ("issues", "editions", "templates", "editions.lock")
        )
        return [
            self.root / CONFIG_NAME,
            *(self.root / d for d in dirs),
            self.root / "static",
            PACKAGE_TEMPLATES,
        ]
