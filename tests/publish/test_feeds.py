"""Feeds parsed back: RSS and Atom with feedparser and lxml, JSON Feed with json."""

# lxml ships no type information (see newsletter/publish/feeds.py).
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import feedparser
import pytest
from lxml import etree

from newsletter.config import BuildSection, Config, NewsletterSection
from newsletter.errors import PublishError
from newsletter.models import Edition, Issue, RenderedEdition
from newsletter.publish.feeds import build_feeds

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = "https://papers.example.org/"
ATOM = "{http://www.w3.org/2005/Atom}"
CJK_HTML = "<p>注意力机制 &amp; <em>变换器</em></p>"


def make_config(feed_limit: int = 50, **newsletter: str) -> Config:
    fields = {
        "title": "论文周报",
        "base_url": "https://papers.example.org",
        "description": "每周的论文摘要",
        "language": "zh-CN",
        "timezone": "Asia/Shanghai",
        "author": "Ada Lovelace",
        "email": "ada@example.org",
    }
    fields.update(newsletter)
    return Config(
        root=Path("/nonexistent"),
        newsletter=NewsletterSection(**fields),
        build=BuildSection(feed_limit=feed_limit),
    )


def make_rendered(
    number: int,
    when: datetime | None = None,
    *,
    title: str | None = None,
    tags: tuple[str, ...] = ("ml", "注意力"),
    preheader: str = "",
    summaries: tuple[str | None, ...] = ("一篇关于注意力的论文",),
    content_html: str = CJK_HTML,
    url: str | None = None,
    image: str | None = None,
) -> RenderedEdition:
    when = when or datetime(2024, 5, 1, 9, 30, tzinfo=SHANGHAI) + timedelta(weeks=number)
    title = title or f"论文周报 #{number}"
    issues = tuple(
        Issue(
            path=f"issues/{number}-{k}.md",
            slug=f"paper-{number}-{k}",
            title=f"Paper {k}",
            date=when,
            body_html="<p>body</p>",
            digest=f"{number}{k}",
            tags=tags,
            summary=summary,
            image=image if k == 0 else None,
        )
        for k, summary in enumerate(summaries)
    )
    edition = Edition(
        key=f"2024-W{number:02d}",
        number=number,
        title=title,
        start=when.date() - timedelta(days=6),
        end=when.date(),
        date=when,
        issues=issues,
        sections=(),
        subject=title,
        preheader=preheader,
    )
    return RenderedEdition(
        edition=edition,
        subject=title,
        preheader=preheader,
        email_html="<html></html>",
        email_text="text",
        web_html="<html></html>",
        content_html=content_html,
        url=url or f"{BASE}editions/{number}/",
    )


def parse(data: bytes) -> Any:
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed


@pytest.fixture
def feeds() -> dict[str, bytes]:
    editions = [make_rendered(n) for n in (2, 3, 1)]
    return build_feeds(make_config(), editions)


def test_three_utf8_files_with_trailing_newline(feeds: dict[str, bytes]) -> None:
    assert sorted(feeds) == ["atom.xml", "feed.json", "feed.xml"]
    for name, data in feeds.items():
        assert data.endswith(b"\n") and not data.endswith(b"\n\n"), name
        # CJK is written as UTF-8, not as character references or \u escapes.
        assert "注意力".encode() in data, name
        assert b"&#" not in data and b"\\u" not in data, name
        # CDATA would need type="CDATA" in Atom, which is invalid; escaped text is equivalent.
        assert b"CDATA" not in data, name


def test_rss_parses_back(feeds: dict[str, bytes]) -> None:
    rss = parse(feeds["feed.xml"])
    assert rss.version == "rss20"
    assert rss.feed.title == "论文周报"
    assert rss.feed.subtitle == "每周的论文摘要"
    assert rss.feed.language == "zh-CN"
    assert rss.feed.link == BASE
    assert [e.title for e in rss.entries] == ["论文周报 #3", "论文周报 #2", "论文周报 #1"]
    first = rss.entries[0]
    assert first.link == f"{BASE}editions/3/"
    assert first.id == f"{BASE}editions/3/"
    guid = etree.fromstring(feeds["feed.xml"]).find("channel/item/guid")
    assert (guid.text, guid.get("isPermaLink")) == (f"{BASE}editions/3/", "true")
    published = parsedate_to_datetime(first.published)
    assert published == datetime(2024, 5, 22, 9, 30, tzinfo=SHANGHAI)
    assert published.utcoffset() == timedelta(hours=8)
    assert [t.term for t in first.tags] == ["ml", "注意力"]
    assert first.summary == "一篇关于注意力的论文"
    assert first.content[0].value == CJK_HTML
    assert first.author == "Ada Lovelace"
    last_build = etree.fromstring(feeds["feed.xml"]).findtext("channel/lastBuildDate")
    assert parsedate_to_datetime(last_build) == published


def test_rss_channel_link_is_the_site_not_the_self_link(feeds: dict[str, bytes]) -> None:
    channel = etree.fromstring(feeds["feed.xml"]).find("channel")
    assert channel.findtext("link") == BASE
    self_link = channel.find(f"{ATOM}link")
    assert self_link.get("rel") == "self"
    assert self_link.get("href") == f"{BASE}feed.xml"
    assert self_link.get("type") == "application/rss+xml"


def test_atom_parses_back(feeds: dict[str, bytes]) -> None:
    atom = parse(feeds["atom.xml"])
    assert atom.version == "atom10"
    assert atom.feed.title == "论文周报"
    assert atom.feed.id == BASE
    assert atom.feed.link == BASE
    assert atom.feed.author_detail == {"name": "Ada Lovelace", "email": "ada@example.org"}
    assert datetime.fromisoformat(atom.feed.updated) == datetime(
        2024, 5, 22, 9, 30, tzinfo=SHANGHAI
    )
    assert [e.id for e in atom.entries] == [f"{BASE}editions/{n}/" for n in (3, 2, 1)]
    first = atom.entries[0]
    assert first.title == "论文周报 #3"
    assert first.link == f"{BASE}editions/3/"
    for stamp in (first.published, first.updated):
        assert stamp == "2024-05-22T09:30:00+08:00"
        assert datetime.fromisoformat(stamp).utcoffset() == timedelta(hours=8)
    assert [t.term for t in first.tags] == ["ml", "注意力"]
    assert first.content[0].type == "text/html"
    assert first.content[0].value == CJK_HTML
    assert first.summary == "一篇关于注意力的论文"


def test_atom_is_structurally_valid(feeds: dict[str, bytes]) -> None:
    root = etree.fromstring(feeds["atom.xml"])
    assert root.tag == f"{ATOM}feed"
    assert root.get("{http://www.w3.org/XML/1998/namespace}lang") == "zh-CN"
    for required in ("id", "title", "updated", "author/" + ATOM + "name"):
        assert root.find(ATOM + required) is not None, required
    links = {link.get("rel"): link for link in root.findall(f"{ATOM}link")}
    assert links["self"].get("href") == f"{BASE}atom.xml"
    assert links["self"].get("type") == "application/atom+xml"
    assert links["alternate"].get("href") == BASE
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 3
    for entry in entries:
        for required in ("id", "title", "updated"):
            assert entry.findtext(ATOM + required), required
        (link,) = entry.findall(f"{ATOM}link")
        assert link.get("rel") == "alternate"
        assert link.get("href") == entry.findtext(f"{ATOM}id")
        content = entry.find(f"{ATOM}content")
        assert content.get("type") == "html"
        assert len(content) == 0 and content.text == CJK_HTML


def test_json_feed_has_the_required_fields(feeds: dict[str, bytes]) -> None:
    feed = json.loads(feeds["feed.json"])
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] == "论文周报"
    assert feed["home_page_url"] == BASE
    assert feed["feed_url"] == f"{BASE}feed.json"
    assert feed["language"] == "zh-CN"
    assert feed["authors"] == [{"name": "Ada Lovelace"}]
    assert isinstance(feed["items"], list)
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["id"]
        assert item["id"] == item["url"]
        assert "content_html" in item or "content_text" in item
    first = feed["items"][0]
    assert first["title"] == "论文周报 #3"
    assert first["content_html"] == CJK_HTML
    assert first["summary"] == "一篇关于注意力的论文"
    assert first["tags"] == ["ml", "注意力"]
    assert datetime.fromisoformat(first["date_published"]).utcoffset() == timedelta(hours=8)
    assert first["date_modified"] == first["date_published"]
    assert "image" not in first


def test_json_feed_image_comes_from_the_first_issue_with_one() -> None:
    image = f"{BASE}images/figure.png"
    rendered = make_rendered(1, summaries=("a", "b"), image=image)
    feed = json.loads(build_feeds(make_config(), [rendered])["feed.json"])
    assert feed["items"][0]["image"] == image


def test_entries_are_newest_first_and_limited() -> None:
    editions = [make_rendered(n) for n in range(1, 8)]
    random.Random(4).shuffle(editions)
    out = build_feeds(make_config(feed_limit=3), editions)
    expected = [f"{BASE}editions/{n}/" for n in (7, 6, 5)]
    assert [e.id for e in parse(out["feed.xml"]).entries] == expected
    assert [e.id for e in parse(out["atom.xml"]).entries] == expected
    assert [i["id"] for i in json.loads(out["feed.json"])["items"]] == expected


def test_order_compares_instants_and_breaks_ties_by_number() -> None:
    shanghai_morning = datetime(2024, 5, 15, 9, 0, tzinfo=SHANGHAI)  # 01:00 UTC
    utc_later = datetime(2024, 5, 15, 2, 0, tzinfo=UTC)
    editions = [
        make_rendered(5, shanghai_morning),
        make_rendered(4, utc_later),
        make_rendered(6, shanghai_morning),
    ]
    items = json.loads(build_feeds(make_config(), editions)["feed.json"])["items"]
    assert [i["id"] for i in items] == [f"{BASE}editions/{n}/" for n in (4, 6, 5)]
    assert items[0]["date_published"] == "2024-05-15T02:00:00+00:00"


def test_output_is_deterministic_and_independent_of_input_order() -> None:
    editions = [make_rendered(n) for n in range(1, 6)]
    config = make_config(feed_limit=4)
    first = build_feeds(config, editions)
    assert build_feeds(config, editions) == first
    assert build_feeds(config, list(reversed(editions))) == first


def test_ids_are_stable_when_a_new_edition_arrives() -> None:
    config = make_config()
    old = build_feeds(config, [make_rendered(1), make_rendered(2)])
    new = build_feeds(config, [make_rendered(1), make_rendered(2), make_rendered(3)])

    def ids(feeds: dict[str, bytes]) -> dict[str, dict[str, str]]:
        items = json.loads(feeds["feed.json"])["items"]
        return {
            "rss": {e.title: e.id for e in parse(feeds["feed.xml"]).entries},
            "atom": {e.title: e.id for e in parse(feeds["atom.xml"]).entries},
            "json": {i["title"]: i["id"] for i in items},
        }

    before, after = ids(old), ids(new)
    for kind in ("rss", "atom", "json"):
        assert {t: after[kind][t] for t in before[kind]} == before[kind], kind
        assert after[kind]["论文周报 #3"] == f"{BASE}editions/3/"


@pytest.mark.parametrize(
    "title",
    [
        "Attention < Recurrence & <Friends>",
        "<script>alert('x')</script> & more",
        "Q&amp;A: &lt;b&gt;",
    ],
)
def test_titles_are_plain_text_in_every_feed(title: str) -> None:
    out = build_feeds(make_config(title=title), [make_rendered(1, title=title)])
    for name in ("feed.xml", "atom.xml"):
        parsed = parse(out[name])
        assert parsed.feed.title == title, name
        assert parsed.entries[0].title == title, name
        # Never markup: each title element holds escaped text and no child elements.
        root = etree.fromstring(out[name])
        titles = root.findall(".//title") + root.findall(f".//{ATOM}title")
        assert len(titles) == 2
        assert all(len(t) == 0 and t.text == title for t in titles), name
        assert b"<script" not in out[name]
    feed = json.loads(out["feed.json"])
    assert feed["title"] == feed["items"][0]["title"] == title


def test_script_in_content_is_carried_escaped_not_removed() -> None:
    html = "<p>ok</p><script>alert(1)</script>"
    out = build_feeds(make_config(), [make_rendered(1, content_html=html)])
    assert b"<script" not in out["feed.xml"] and b"<script" not in out["atom.xml"]
    atom = etree.fromstring(out["atom.xml"])
    assert atom.findtext(f"{ATOM}entry/{ATOM}content") == html
    assert json.loads(out["feed.json"])["items"][0]["content_html"] == html


def test_summary_prefers_the_preheader_then_issue_summaries_then_titles() -> None:
    def summary(rendered: RenderedEdition) -> str:
        feed = json.loads(build_feeds(make_config(), [rendered])["feed.json"])
        text: str = feed["items"][0]["summary"]
        return text

    assert summary(make_rendered(1, preheader="  本周：\n三篇论文  ")) == "本周： 三篇论文"
    assert summary(make_rendered(1, summaries=("甲", None, "丙"))) == "甲 · 丙"
    assert summary(make_rendered(1, summaries=(None, None))) == "Paper 0 · Paper 1"
    long_cjk = summary(make_rendered(1, summaries=("长" * 1000,)))
    assert len(long_cjk) == 280 and long_cjk.endswith("…")
    long_words = summary(make_rendered(1, summaries=("word " * 200,)))
    assert len(long_words) <= 280 and long_words.endswith("word…")


def test_rss_description_is_the_summary_next_to_full_content() -> None:
    out = build_feeds(make_config(), [make_rendered(1, preheader="Three papers this week")])
    item = etree.fromstring(out["feed.xml"]).find("channel/item")
    assert item.findtext("description") == "Three papers this week"
    assert item.findtext("{http://purl.org/rss/1.0/modules/content/}encoded") == CJK_HTML


def test_no_editions_gives_valid_deterministic_feeds() -> None:
    config = make_config()
    out = build_feeds(config, [])
    assert build_feeds(config, []) == out
    rss, atom = parse(out["feed.xml"]), parse(out["atom.xml"])
    assert rss.entries == [] and atom.entries == []
    assert atom.feed.updated == "1970-01-01T00:00:00+00:00"
    assert json.loads(out["feed.json"])["items"] == []


def test_minimal_config_still_gives_valid_feeds() -> None:
    config = make_config(description="", author="", email="", language="en")
    out = build_feeds(config, [make_rendered(1, tags=())])
    rss, atom = parse(out["feed.xml"]), parse(out["atom.xml"])
    # RSS requires a description and Atom an author: the title stands in for both.
    assert rss.feed.subtitle == "论文周报"
    assert atom.feed.author_detail.name == "论文周报"
    assert "tags" not in rss.entries[0] and "tags" not in atom.entries[0]
    feed = json.loads(out["feed.json"])
    assert "authors" not in feed and "description" not in feed
    assert "tags" not in feed["items"][0]


@pytest.mark.parametrize(
    "bad",
    [
        [make_rendered(1, url="/editions/1/")],
        [make_rendered(1), make_rendered(1, datetime(2024, 1, 1, tzinfo=UTC))],
        [make_rendered(1), make_rendered(2, url=f"{BASE}editions/1/")],
        [make_rendered(1, datetime(2024, 1, 1))],  # naive
    ],
)
def test_unusable_editions_are_refused(bad: list[RenderedEdition]) -> None:
    with pytest.raises(PublishError, match="edition"):
        build_feeds(make_config(), bad)


def test_edition_dates_keep_their_own_zone() -> None:
    when = datetime(2024, 3, 1, 23, 15, tzinfo=ZoneInfo("America/New_York"))
    out = build_feeds(make_config(), [make_rendered(1, when)])
    assert parse(out["atom.xml"]).entries[0].published == "2024-03-01T23:15:00-05:00"
    assert parse(out["feed.xml"]).entries[0].published.endswith("23:15:00 -0500")
    assert json.loads(out["feed.json"])["items"][0]["date_published"] == (
        "2024-03-01T23:15:00-05:00"
    )


def test_characters_xml_cannot_carry_are_dropped_everywhere() -> None:
    rendered = make_rendered(
        1,
        title="Bad\x0bTitle",
        content_html="<p>a\x00b\x1fc</p>",
        tags=("t\x08ag",),
        preheader="pre\ufffeheader",
    )
    out = build_feeds(make_config(title="News\x01letter"), [rendered])
    atom = parse(out["atom.xml"])
    assert atom.feed.title == "Newsletter"
    entry = atom.entries[0]
    assert (entry.title, entry.summary, entry.content[0].value) == (
        "BadTitle",
        "preheader",
        "<p>abc</p>",
    )
    assert parse(out["feed.xml"]).entries[0].tags[0].term == "tag"
    item = json.loads(out["feed.json"])["items"][0]
    assert (item["title"], item["tags"]) == ("BadTitle", ["tag"])
