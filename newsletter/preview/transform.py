"""Display-only rewrites of rendered output: local URLs, forced light/dark, safe file lookup."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

# A `prefers-color-scheme` feature anywhere in a media query (in <style> or a media="" attribute).
_SCHEME = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.IGNORECASE)
_ALWAYS = "(min-width: 0px)"
_NEVER = "(max-width: 0px)"  # no visible frame is zero pixels wide
_HEAD_END = re.compile(r"</head\s*>", re.IGNORECASE)


def force_scheme(html: str, dark: bool) -> str:
    """Make the page's own dark-mode CSS apply (or never apply), whatever the OS setting is.

    The email's ``@media (prefers-color-scheme: dark)`` rules are what mail clients run, so
    rewriting the condition shows exactly those rules, rather than an imitation of them.
    """

    def replace(m: re.Match[str]) -> str:
        return _ALWAYS if (m.group(1).lower() == "dark") == dark else _NEVER

    scheme = "dark" if dark else "light"
    style = f"<style>:root {{ color-scheme: {scheme}; }}</style>"
    return add_to_head(_SCHEME.sub(replace, html), style)


def add_to_head(html: str, snippet: str) -> str:
    """Insert ``snippet`` at the end of <head>, or at the start if the page has none."""
    m = _HEAD_END.search(html)
    if m is None:
        return snippet + html
    return html[: m.start()] + snippet + html[m.start() :]


def localize(html: str, base_url: str, local_base: str) -> str:
    """Point the site's absolute URLs at the preview server, so images and pages load here."""
    return html.replace(base_url, local_base)


def safe_file(listing: Mapping[str, Path], rel: str, root: Path) -> Path | None:
    """The file published at ``rel``, only if the build lists it and it lies inside ``root``.

    Serving from the build's own listing (never by joining a request path onto a folder) is
    what rules out ``..``, encoded slashes and absolute paths; the resolve check also refuses
    a symlink that points out of the project.
    """
    path = listing.get(rel)
    if path is None:
        return None
    try:
        target = path.resolve(strict=True)
        inside = target.is_relative_to(root.resolve(strict=True))
    except (OSError, RuntimeError, ValueError):
        return None
    return target if inside and target.is_file() else None
