"""The built site from public/: right content types, caching headers, ETags, no traversal."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.datastructures import Headers
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.staticfiles import NotModifiedResponse, StaticFiles
from starlette.types import Scope

from newsletter.publish.feeds import ATOM_FILE, JSON_FEED_FILE, RSS_FILE

# By file name first (feed.xml is RSS, not generic XML), then by suffix.
_BY_NAME = {
    RSS_FILE: "application/rss+xml; charset=utf-8",
    ATOM_FILE: "application/atom+xml; charset=utf-8",
    JSON_FEED_FILE: "application/feed+json; charset=utf-8",
}
_BY_SUFFIX = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".xml": "application/xml; charset=utf-8",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".woff2": "font/woff2",
    ".pdf": "application/pdf",
}
# Pages and feeds change with every build, so caches revalidate them soon (the ETag makes
# that a cheap 304); other files (images, assets) change rarely.
PAGE_CACHE = "public, max-age=300"
ASSET_CACHE = "public, max-age=86400"


def content_type(path: str) -> str | None:
    """Our media type for ``path``, or None to let Starlette guess from the suffix."""
    name = os.path.basename(path)
    return _BY_NAME.get(name) or _BY_SUFFIX.get(os.path.splitext(name)[1].lower())


def cache_control(path: str) -> str:
    name = os.path.basename(path)
    page = name in _BY_NAME or name.endswith((".html", ".txt"))
    return PAGE_CACHE if page else ASSET_CACHE


class SiteFiles(StaticFiles):
    """StaticFiles (traversal-safe lookup, 304s, ranges) with our types and cache headers.

    Hidden files are never served, and the trailing-slash redirect for a directory is a
    relative path: Starlette's would repeat the request's Host header in Location.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__(directory=directory, html=True, check_dir=False)

    async def check_config(self) -> None:
        """public/ may not exist yet (not built, or the build failed): that is a 404, not 500."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if any(part.startswith(".") for part in Path(path).parts if part not in (".", "..")):
            path = "\0"  # a name no file system has: answered 404 below
        response = await super().get_response(path, scope)
        if isinstance(response, RedirectResponse):
            target = "/" + scope["path"].lstrip("/")  # never "//host": protocol-relative
            return RedirectResponse(target.rstrip("/") + "/", status_code=301)
        return response

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        path = os.fspath(full_path)
        response = FileResponse(
            path,
            status_code=status_code,
            stat_result=stat_result,
            media_type=content_type(path),
            headers={"Cache-Control": cache_control(path), "X-Content-Type-Options": "nosniff"},
        )
        if self.is_not_modified(response.headers, Headers(scope=scope)):
            return NotModifiedResponse(response.headers)
        return response
