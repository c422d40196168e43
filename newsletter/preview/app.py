"""The preview web app (Starlette): pages over the pipeline's output, and live reload."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from newsletter import clock
from newsletter.models import Edition
from newsletter.preview.project import (
    SAMPLE_RECIPIENT,
    EditionView,
    PreviewFailure,
    Project,
    Snapshot,
)
from newsletter.preview.transform import force_scheme, localize, safe_file
from newsletter.preview.watcher import Watcher
from newsletter.publish.feeds import (
    ATOM_FILE,
    ATOM_TYPE,
    JSON_FEED_FILE,
    JSON_FEED_TYPE,
    RSS_FILE,
    RSS_TYPE,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
MOBILE_WIDTH = 375
DESKTOP_WIDTHS = (600, 700, 800)
FEED_TYPES = {RSS_FILE: RSS_TYPE, ATOM_FILE: ATOM_TYPE, JSON_FEED_FILE: JSON_FEED_TYPE}
NO_STORE = {"Cache-Control": "no-store"}  # a reload must never show a stale frame
_EDITION_FILE = re.compile(r"editions/(\d+)/(index\.html|email\.html|email\.txt)?")

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Options:
    """The edition page's toggles, kept in the query string so a live reload keeps them."""

    view: str = "both"  # both | mobile | desktop
    width: int = 700  # the desktop frame
    dark: bool = False

    @classmethod
    def parse(cls, q: QueryParams) -> Options:
        view = q.get("view", "both")
        width = int(q["width"]) if q.get("width", "").isdigit() else 700
        return cls(
            view=view if view in ("both", "mobile", "desktop") else "both",
            width=min(max(width, DESKTOP_WIDTHS[0]), DESKTOP_WIDTHS[-1]),
            dark=q.get("dark") == "1",
        )

    def query(self, **changes: Any) -> str:
        o = replace(self, **changes)
        return "?" + urlencode({"view": o.view, "width": o.width, "dark": int(o.dark)})


def _page(
    name: str, version: str, *, status: int = 200, errors: Sequence[str] = (), **context: Any
) -> HTMLResponse:
    context.setdefault("title", "")
    body = _env.get_template(name).render(version=version, errors=list(errors), **context)
    return HTMLResponse(body, status_code=status, headers=NO_STORE)


def _dark(request: Request) -> bool | None:
    value = request.query_params.get("dark")
    return None if value is None else value == "1"


class Preview:
    """The request handlers, sharing one Project."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def _load(self) -> tuple[str, Snapshot | PreviewFailure]:
        version = self.project.version  # read before loading, so a change during it reloads
        try:
            return version, self.project.snapshot()
        except PreviewFailure as exc:
            return version, exc

    def _display(self, request: Request, snap: Snapshot, html: str) -> HTMLResponse:
        """Rendered output as the browser needs it: local URLs, light or dark on request."""
        html = localize(html, snap.config.base_url, str(request.base_url) + "site/")
        dark = _dark(request)
        return HTMLResponse(html if dark is None else force_scheme(html, dark), headers=NO_STORE)

    def index(self, request: Request) -> Response:
        version, snap = self._load()
        if isinstance(snap, PreviewFailure):
            return _page("index.html.j2", version, errors=snap.lines, rows=[], issues=[])
        errors = snap.failures()
        rows: list[dict[str, Any]] = []
        for edition in sorted(snap.editions, key=lambda e: e.number, reverse=True):
            try:
                view: EditionView | None = snap.edition(edition.number)
            except PreviewFailure:
                view = None
            rows.append({"e": edition, "view": view, "state": _state(edition, snap)})
        return _page(
            "index.html.j2",
            version,
            errors=errors,
            rows=rows,
            issues=snap.issues(),
            title=snap.config.newsletter.title,
        )

    def edition(self, request: Request) -> Response:
        version, snap = self._load()
        number: int = request.path_params["number"]
        if isinstance(snap, PreviewFailure):
            return _page("edition.html.j2", version, errors=snap.lines, number=number, v=None)
        title = snap.config.newsletter.title
        numbers = [e.number for e in snap.editions]
        try:
            view = snap.edition(number)
        except PreviewFailure as exc:
            return _page(
                "edition.html.j2", version, errors=exc.lines, number=number, v=None, title=title
            )
        if view is None:
            return _page(
                "missing.html.j2",
                version,
                status=404,
                title=title,
                what=f"edition {number}",
                numbers=numbers,
            )
        opts = Options.parse(request.query_params)
        msg = view.message
        headers = [
            ("From", msg.from_header),
            ("To", SAMPLE_RECIPIENT),
            ("Subject", msg.subject),
            *([("Reply-To", msg.reply_to)] if msg.reply_to else []),
            *msg.headers.items(),
            ("Message-ID", msg.message_id),
        ]
        older = [n for n in numbers if n < number]
        newer = [n for n in numbers if n > number]
        return _page(
            "edition.html.j2",
            version,
            title=title,
            number=number,
            v=view,
            opts=opts,
            mobile=MOBILE_WIDTH,
            widths=DESKTOP_WIDTHS,
            headers=headers,
            state=_state(view.edition, snap),
            recipient=SAMPLE_RECIPIENT,
            feed_json=json.dumps(view.feed_item, ensure_ascii=False, indent=2),
            prev=older[-1] if older else None,
            next=newer[0] if newer else None,
            size=len(msg.html.encode("utf-8")),
        )

    def edition_file(self, request: Request) -> Response:
        """The message one recipient gets: HTML, plain text or the whole .eml."""
        version, snap = self._load()
        if isinstance(snap, PreviewFailure):
            return _page("error.html.j2", version, errors=snap.lines)
        try:
            view = snap.edition(request.path_params["number"])
        except PreviewFailure as exc:
            return _page("error.html.j2", version, errors=exc.lines)
        kind = request.path_params["kind"]
        if view is None or kind not in ("email.html", "email.txt", "message.eml"):
            return Response("not found", status_code=404)
        if kind == "email.html":
            return self._display(request, snap, view.message.html)
        if kind == "email.txt":
            return Response(
                view.message.text, media_type="text/plain; charset=utf-8", headers=NO_STORE
            )
        return Response(
            view.message.as_bytes(),
            media_type="message/rfc822",
            headers={
                **NO_STORE,
                "Content-Disposition": f'attachment; filename="edition-{view.edition.number}.eml"',
            },
        )

    def issue(self, request: Request) -> Response:
        version, snap = self._load()
        if isinstance(snap, PreviewFailure):
            return _page("issue.html.j2", version, errors=snap.lines, found=None)
        found = snap.issue(request.path_params["slug"])
        title = snap.config.newsletter.title
        if found is None:
            return _page(
                "missing.html.j2",
                version,
                status=404,
                title=title,
                what=f"issue {request.path_params['slug']!r}",
                numbers=[],
            )
        opts = Options.parse(request.query_params)
        return _page("issue.html.j2", version, found=found, opts=opts, title=title)

    def issue_page(self, request: Request) -> Response:
        version, snap = self._load()
        if isinstance(snap, PreviewFailure):
            return _page("error.html.j2", version, errors=snap.lines)
        found = snap.issue(request.path_params["slug"])
        if found is None:
            return Response("no such issue", status_code=404)
        renderer = snap.renderer.renderer
        try:
            html = snap.render(lambda: renderer.render_issue(*found))
        except PreviewFailure as exc:
            return _page("error.html.j2", version, errors=exc.lines)
        return self._display(request, snap, html)

    def site(self, request: Request) -> Response:
        """The site as `build` would write it to public/, served from memory (never written)."""
        version, snap = self._load()
        if isinstance(snap, PreviewFailure):
            return _page("error.html.j2", version, errors=snap.lines)
        rel: str = request.path_params["path"]
        try:
            return self._site_file(request, snap, rel) or Response("not found", 404)
        except PreviewFailure as exc:
            return _page("error.html.j2", version, errors=exc.lines)

    def _site_file(self, request: Request, snap: Snapshot, rel: str) -> Response | None:
        if rel in ("", "index.html"):
            renderer = snap.renderer.renderer
            return self._display(
                request, snap, snap.render(lambda: renderer.render_index(snap.editions))
            )
        if rel in FEED_TYPES:
            return Response(snap.feeds()[rel], media_type=FEED_TYPES[rel], headers=NO_STORE)
        m = _EDITION_FILE.fullmatch(rel)
        if m:
            view = snap.edition(int(m.group(1)))
            if view is None:
                return None
            if m.group(2) == "email.txt":
                return Response(view.rendered.email_text, media_type="text/plain; charset=utf-8")
            html = (
                view.rendered.email_html if m.group(2) == "email.html" else view.rendered.web_html
            )
            return self._display(request, snap, html)
        path = safe_file(snap.assets, rel, self.project.root)
        return FileResponse(path, headers=NO_STORE) if path else None

    def reload(self, request: Request) -> Response:
        """The current version; pages poll it and reload when it differs from theirs.

        A short poll rather than a long poll or a stream: nothing is left in flight when the
        server stops, and a local request every few hundred milliseconds costs nothing.
        """
        return JSONResponse({"version": self.project.version}, headers=NO_STORE)


def _state(edition: Edition, snap: Snapshot) -> str:
    if edition.is_open:
        return "open"
    if edition.draft:
        return "draft"
    return "next" if edition.number == snap.upcoming else "closed"


def create_app(
    root: Path,
    *,
    watch: bool = True,
    allowed_hosts: Sequence[str] | None = None,
    now: Callable[[], datetime] = clock.now,
) -> Starlette:
    """The preview app for the project at ``root``; ``watch`` starts the file watcher."""
    project = Project(root, now=now)
    p = Preview(project)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        watcher = Watcher(project.watched, project.changed) if watch else None
        if watcher:
            watcher.start()
        try:
            yield
        finally:
            if watcher:
                watcher.stop()

    routes = [
        Route("/", p.index),
        Route("/editions/{number:int}/", p.edition),
        Route("/editions/{number:int}/{kind:str}", p.edition_file),
        Route("/issues/{slug:str}/", p.issue),
        Route("/issues/{slug:str}/page", p.issue_page),
        Route("/site/{path:path}", p.site),
        Route("/_reload", p.reload),
    ]
    middleware = (
        [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))]
        if allowed_hosts
        else []
    )
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.project = project
    return app
