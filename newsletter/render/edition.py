"""Render one edition to every output (email HTML + text, archive page, feed body) by one path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import jinja2
from markupsafe import Markup

from newsletter.config import Config
from newsletter.errors import TemplateError
from newsletter.i18n import Translator
from newsletter.models import UNSUBSCRIBE_PLACEHOLDER, Edition, Issue, RenderedEdition
from newsletter.render.env import display_path, make_env, template_error
from newsletter.render.mjml import compile_mjml
from newsletter.render.text import html_to_text

EMAIL_MJML = "email.mjml.j2"
EMAIL_TEXT = "email.txt.j2"
EDITION_PAGE = "edition.html.j2"
CONTENT = "content.html.j2"
INDEX_PAGE = "index.html.j2"
ISSUE_PAGE = "issue.html.j2"


def edition_url(config: Config, number: int) -> str:
    return f"{config.base_url}editions/{number}/"


def issue_view(issue: Issue) -> dict[str, Any]:
    """What templates see for an issue: every field, unknown front-matter keys, safe HTML."""
    view: dict[str, Any] = dict(issue.extra)
    view.update({k: getattr(issue, k) for k in issue.__dataclass_fields__ if k != "extra"})
    view["extra"] = issue.extra
    view["body_html"] = Markup(issue.body_html)  # sanitized by the loader (nh3)
    view["body_text"] = html_to_text(issue.body_html)
    return view


class Renderer:
    """Holds the template environment for one config; renders editions and pages."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.env = make_env(config)
        self.t = Translator(config.newsletter.language, config.strings)
        base = config.base_url
        self.urls = {
            "home": base,
            "rss": base + "feed.xml",
            "atom": base + "atom.xml",
            "json": base + "feed.json",
        }

    # -- views ---------------------------------------------------------------------------
    def edition_view(self, edition: Edition) -> dict[str, Any]:
        # A shallow copy: dataclasses.asdict would deep-copy every issue only to drop them.
        view = {
            f.name: getattr(edition, f.name)
            for f in fields(edition)
            if f.name not in ("issues", "sections")
        }
        view.update(
            url=edition_url(self.config, edition.number),
            count=len(edition.issues),
            intro_html=Markup(edition.intro_html),
            tags=edition.tags,
            intro_text=html_to_text(edition.intro_html) if edition.intro_html else "",
        )
        return view

    def _base_context(self) -> dict[str, Any]:
        return {
            "newsletter": self.config.newsletter,
            "urls": self.urls,
            "t": self.t,
            "date": self.t.date,
            "datetime": self.t.datetime,
            "unsubscribe_url": UNSUBSCRIBE_PLACEHOLDER,
        }

    def context(
        self, edition: Edition, prev: Edition | None = None, next: Edition | None = None
    ) -> dict[str, Any]:
        ctx = self._base_context()
        views = {i.path: issue_view(i) for i in edition.issues}  # one view per issue, shared
        ctx.update(
            edition=self.edition_view(edition),
            sections=[
                {"title": s.title, "issues": [views[i.path] for i in s.issues]}
                for s in edition.sections
            ],
            issues=[views[i.path] for i in edition.issues],
            prev=self.edition_view(prev) if prev else None,
            next=self.edition_view(next) if next else None,
        )
        return ctx

    # -- rendering -----------------------------------------------------------------------
    def _render(self, name: str, ctx: dict[str, Any], what: str) -> str:
        try:
            return self.env.get_template(name).render(ctx)
        except jinja2.TemplateError as exc:
            raise template_error(self.config, exc, name, what) from exc
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            # Errors raised by template expressions (bad filter arguments, format strings).
            raise template_error(self.config, exc, name, what) from exc

    def _template_path(self, name: str) -> str:
        try:
            filename = self.env.get_template(name).filename
        except jinja2.TemplateError as exc:
            raise template_error(self.config, exc, name, name) from exc
        return display_path(self.config, filename, name)

    def render(
        self, edition: Edition, prev: Edition | None = None, next: Edition | None = None
    ) -> RenderedEdition:
        what = f"edition {edition.number} ({edition.key})"
        ctx = self.context(edition, prev, next)
        mjml_source = self._render(EMAIL_MJML, ctx, what)
        email_html = compile_mjml(mjml_source, self._template_path(EMAIL_MJML), what)
        email_text = self._render(EMAIL_TEXT, ctx, what).strip() + "\n"
        content_html = self._render(CONTENT, ctx, what).strip()
        web_html = self._render(EDITION_PAGE, ctx, what)
        for part, text in (("email HTML", email_html), ("email text", email_text)):
            if UNSUBSCRIBE_PLACEHOLDER not in text:
                raise TemplateError(
                    f"{what}: the {part} has no unsubscribe link",
                    hint=f"templates must use {{{{ unsubscribe_url }}}} (it becomes "
                    f"{UNSUBSCRIBE_PLACEHOLDER}, filled in per recipient)",
                )
        return RenderedEdition(
            edition=edition,
            subject=edition.subject,
            preheader=edition.preheader,
            email_html=email_html,
            email_text=email_text,
            web_html=web_html,
            content_html=content_html,
            url=edition_url(self.config, edition.number),
        )

    def render_index(self, editions: Sequence[Edition]) -> str:
        ctx = self._base_context()
        newest_first = sorted(editions, key=lambda e: (e.date, e.number), reverse=True)
        ctx["editions"] = [self.edition_view(e) for e in newest_first]
        return self._render(INDEX_PAGE, ctx, "the archive index")

    def render_issue(self, issue: Issue, edition: Edition | None = None) -> str:
        ctx = self._base_context()
        ctx.update(issue=issue_view(issue), edition=self.edition_view(edition) if edition else None)
        return self._render(ISSUE_PAGE, ctx, f"issue {issue.path}")
