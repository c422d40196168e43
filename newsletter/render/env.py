"""The Jinja2 environment: user templates override packaged ones file by file; errors get a line."""

from __future__ import annotations

import hashlib
import traceback
from pathlib import Path

import jinja2

from newsletter.config import Config
from newsletter.errors import Problem, TemplateError

PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _autoescape(name: str | None) -> bool:
    # Plain-text parts must not be HTML-escaped; everything else (HTML, MJML, XML) must be.
    return not (name or "").endswith((".txt.j2", ".txt"))


def template_dirs(config: Config) -> list[Path]:
    user = config.root / config.build.templates_dir
    return [user, PACKAGE_TEMPLATES] if user.is_dir() else [PACKAGE_TEMPLATES]


def make_env(config: Config) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in template_dirs(config)]),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def templates_digest(config: Config) -> str:
    """Hash of every effective template file: part of each render cache key."""
    h = hashlib.sha256()
    seen: set[str] = set()
    for base in template_dirs(config):
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base).as_posix()
            if path.is_file() and rel not in seen and not rel.endswith(".md"):
                seen.add(rel)
                h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def display_path(config: Config, filename: str | None, name: str | None) -> str:
    """A template's path as the user knows it: project-relative for overrides, else package."""
    if filename:
        path = Path(filename)
        try:
            return path.resolve().relative_to(config.root).as_posix()
        except ValueError:
            pass
        try:
            inside = path.resolve().relative_to(PACKAGE_TEMPLATES)
            return "newsletter/templates/" + inside.as_posix()
        except ValueError:
            return filename
    return name or "<template>"


def template_error(config: Config, exc: Exception, name: str, what: str) -> TemplateError:
    """Map a Jinja2 exception to a TemplateError naming the template file and line."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        path = display_path(config, exc.filename, exc.name or name)
        return TemplateError(
            f"{path}: {exc.message}",
            problems=[Problem(path, exc.lineno, f"template syntax error: {exc.message}")],
        )
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(
            f"template {exc.name!r} not found",
            hint="searched: " + ", ".join(str(p) for p in template_dirs(config)),
        )
    # Undefined variables and runtime errors: Jinja rewrites tracebacks so that template frames
    # carry the template file and line; the innermost such frame is where the mistake is.
    path, line = name, None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2") or frame.filename.endswith(".html"):
            path, line = display_path(config, frame.filename, name), frame.lineno
    message = str(exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else exc)
    if isinstance(exc, jinja2.UndefinedError):
        message = f"unknown template variable: {message}"
    return TemplateError(
        f"{path}: {message} (while rendering {what})",
        problems=[Problem(path, line, f"{message} (while rendering {what})")],
    )
