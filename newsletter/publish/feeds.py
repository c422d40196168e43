"""Build the three feeds (RSS 2.0, Atom 1.0, JSON Feed 1.1) from rendered editions, reproducibly."""

# lxml ships no type information and the shared mypy overrides do not list it; the only lxml
# calls here are a parse and a serialize, so treating the module as Any costs nothing.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from feedgen.feed import FeedGenerator
from lxml import etree

from newsletter.config import Config
from newsletter.errors import PublishError
from newsletter.models import RenderedEdition

RSS_FILE = "feed.xml"
ATOM_FILE = "atom.xml"
JSON_FEED_FILE = "feed.json"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
RSS_TYPE = "application/rss+xml"
ATOM_TYPE = "application/atom+xml"
JSON_FEED_TYPE = "application/feed+json"

_ATOM_NS = "http://www.w3.org/2005/Atom"
# Atom requires <updated> on the feed; with no editions there is no real date to use, and now()
# would make every empty build differ.
_EMPTY_FEED_DATE = datetime(1970, 1, 1, tzinfo=UTC)
_SUMMARY_LIMIT = 280
_GENERATOR = "newsletter"
# Characters XML 1.0 forbids (lxml refuses them) and lone surrogates (UTF-8 cannot encode them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class _Channel:
    """The feed-level fields, cleaned once and shared by the three writers."""

    title: str
    description: str
    language: str
    author: str
    email: str
    site_url: str


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """What all three feeds say about one edition, computed once so they cannot disagree."""

    id: str
    url: str
    title: str
    summary: str
    content_html: str
    date: datetime
    tags: tuple[str, ...]
    image: str | None


def build_feeds(config: Config, rendered: Sequence[RenderedEdition]) -> dict[str, bytes]:
    """Render feed.xml, atom.xml and feed.json for the newest ``build.feed_limit`` editions.

    Input order does not matter; identical input gives identical bytes. Entry ids are the
    edition's archive URL (see ``feed_entries``).
    """
    entries = feed_entries(rendered, config.build.feed_limit)
    site = config.newsletter
    channel = _Channel(
        title=_clean(site.title),
        description=_clean(site.description),
        language=site.language,
        author=_clean(site.author),
        email=site.email,
        site_url=config.base_url,
    )
    return {
        RSS_FILE: _rss(channel, entries),
        ATOM_FILE: _atom(channel, entries),
        JSON_FEED_FILE: _json_feed(channel, entries),
    }


def feed_entries(rendered: Sequence[RenderedEdition], limit: int) -> list[FeedEntry]:
    """The newest ``limit`` editions as feed entries, newest first by (date, number).

    The id of an entry is the edition's archive URL, used verbatim as RSS guid
    (isPermaLink="true"), Atom id and JSON Feed id. The URL is built from ``base_url`` and the
    edition number, and the number never changes once published (editions.lock), so the id is
    the same on every build and machine and does not move when newer editions arrive. Unlike a
    tag: URI it needs no minting date, and the edition date can change while an edition is open.
    """
    _check(rendered)
    ordered = sorted(rendered, key=lambda r: (r.edition.date, r.edition.number), reverse=True)
    return [_entry(r) for r in ordered[:limit]]


def _check(rendered: Sequence[RenderedEdition]) -> None:
    """Refuse input that would give duplicate, relative or undatable entries."""
    numbers: set[int] = set()
    urls: set[str] = set()
    for r in rendered:
        number = r.edition.number
        parts = urlsplit(r.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise PublishError(f"edition {number}: feed link must be an absolute URL: {r.url!r}")
        if r.edition.date.utcoffset() is None:
            raise PublishError(f"edition {number}: date {r.edition.date} has no time zone")
        if number in numbers or r.url in urls:
            raise PublishError(
                f"edition {number}: two editions share a number or URL ({r.url})",
                hint="feed entry ids must be unique; check editions.lock",
            )
        numbers.add(number)
        urls.add(r.url)


def _entry(r: RenderedEdition) -> FeedEntry:
    edition = r.edition
    image = next((i.image for i in edition.issues if i.image), None)
    return FeedEntry(
        id=r.url,
        url=r.url,
        title=_clean(edition.title),
        summary=_summary(r),
        content_html=_clean(r.content_html),
        date=edition.date,
        tags=tuple(_clean(t) for t in edition.tags),
        image=image,
    )


def _clean(text: str) -> str:
    """Drop characters no XML feed can carry, so one stray control character fails no build."""
    return _NOT_XML.sub("", text)


def _summary(r: RenderedEdition) -> str:
    """A short plain-text summary: the preheader, else the issue summaries, else their titles."""
    issues = r.edition.issues
    candidates = (
        r.preheader,
        r.edition.preheader,
        " · ".join(i.summary for i in issues if i.summary),
        " · ".join(i.title for i in issues),
        r.edition.title,
    )
    text = next((" ".join(c.split()) for c in candidates if c.strip()), "")
    return _shorten(_clean(text), _SUMMARY_LIMIT)


def _shorten(text: str, limit: int) -> str:
    """Cut at a word boundary when there is one nearby; CJK text has none, so cut anywhere."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ·,;:") + "…"


def _generator(site: _Channel, entries: Sequence[FeedEntry], self_file: str, self_type: str) -> Any:
    """A FeedGenerator with every field set explicitly; feedgen's defaults include now()."""
    fg = FeedGenerator()
    # dc:creator carries the author's name in RSS, whose own <author> must be an email address.
    fg.load_extension("dc", atom=False, rss=True)
    fg.id(site.site_url)
    fg.title(site.title)
    fg.description(site.description or site.title)  # required by RSS; also the Atom subtitle
    fg.language(site.language)
    fg.generator(_GENERATOR)
    # Atom needs an author on the feed or on every entry; the title stands in for a missing one.
    author = {"name": site.author or site.title}
    if site.email:
        author["email"] = site.email
        fg.managingEditor(f"{site.email} ({author['name']})")
    fg.author(author)
    # feedgen makes the RSS <channel><link> the last link added: self first, the site last.
    fg.link(href=site.site_url + self_file, rel="self", type=self_type)
    fg.link(href=site.site_url, rel="alternate", type="text/html")
    fg.updated(entries[0].date if entries else _EMPTY_FEED_DATE)
    for e in entries:
        fe = fg.add_entry(order="append")  # the default, "prepend", would reverse our order
        fe.guid(e.id, permalink=True)
        fe.title(e.title)
        fe.link(href=e.url, rel="alternate", type="text/html")
        # type="html" escapes the markup; type="CDATA" would put an invalid type in Atom.
        fe.content(e.content_html, type="html")
        fe.summary(e.summary)  # also the RSS <description>, next to content:encoded
        if self_file == RSS_FILE:
            # RSS readers render <description> as HTML: escape the plain-text summary once more,
            # or a "<svg onload=…>" typed in a title or preheader would become markup there.
            fe.description(html.escape(e.summary, quote=False), isSummary=True)
        fe.published(e.date)
        fe.updated(e.date)
        if e.tags:
            fe.category([{"term": tag} for tag in e.tags])
        if site.author:
            fe.dc.dc_creator(site.author)
    return fg


def _rss(site: _Channel, entries: Sequence[FeedEntry]) -> bytes:
    fg = _generator(site, entries, RSS_FILE, RSS_TYPE)
    data: bytes = fg.rss_str(pretty=True, encoding="UTF-8", xml_declaration=True)
    return data


def _atom(site: _Channel, entries: Sequence[FeedEntry]) -> bytes:
    fg = _generator(site, entries, ATOM_FILE, ATOM_TYPE)
    raw: bytes = fg.atom_str(pretty=False, encoding="UTF-8", xml_declaration=True)
    # feedgen 1.0.0 drops rel and type from entry links (it reads them from the new element
    # instead of the link data); put them back so readers need not rely on the implicit rel.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(raw, parser)
    for link in root.iterfind(f"{{{_ATOM_NS}}}entry/{{{_ATOM_NS}}}link"):
        if "rel" not in link.attrib:
            link.set("rel", "alternate")
            link.set("type", "text/html")
    data: bytes = etree.tostring(root, pretty_print=True, encoding="UTF-8", xml_declaration=True)
    return data


def _json_feed(site: _Channel, entries: Sequence[FeedEntry]) -> bytes:
    feed: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": site.title,
        "home_page_url": site.site_url,
        "feed_url": site.site_url + JSON_FEED_FILE,
    }
    if site.description:
        feed["description"] = site.description
    feed["language"] = site.language
    if site.author:
        feed["authors"] = [{"name": site.author}]
    feed["items"] = [_json_item(e) for e in entries]
    # Fixed key order (insertion) rather than sort_keys, so "version" comes first for humans.
    text = json.dumps(feed, ensure_ascii=False, indent=2)
    return (text + "\n").encode("utf-8")


def _json_item(e: FeedEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": e.id,
        "url": e.url,
        "title": e.title,
        "content_html": e.content_html,
        "summary": e.summary,
    }
    if e.image:
        item["image"] = e.image
    item["date_published"] = e.date.isoformat()
    item["date_modified"] = e.date.isoformat()
    if e.tags:
        item["tags"] = list(e.tags)
    return item
