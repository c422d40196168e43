"""Security: no script, javascript: link or event handler reaches email, archive or feeds."""

from __future__ import annotations

import email.policy
import json
import re
from datetime import UTC, datetime
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree as ET

import feedparser
import pytest

from newsletter.config import Config
from newsletter.deliver.message import PreparedEdition
from newsletter.deliver.send import open_state, plan_send
from newsletter.tokens import Signer
from tests.conftest import BASE_CONFIG, MakeProject
from tests.reliability import SECRET, assert_no_crash, located_lines, run, snapshot
from tests.reliability.security_support import (
    GOOD_ISSUE,
)

# --- script in outputs ----------------------------------------------------------------------

EVIL_BODY = """\
Intro <script>alert('body')</script> text.

<a href="javascript:alert(1)">js</a> <a href=" JaVaScRiPt:alert(2)">js2</a>
<a href="java&#x09;script:alert(3)">js3</a> <a href="&#106;avascript:alert(4)">js4</a>
<a href="vbscript:msgbox(5)">vb</a> <a href="data:text/html;base64,PHNjcmlwdD4=">data</a>

<img src="x.png" onerror="alert(6)"> <img src="data:image/svg+xml;base64,PHN2Zy8+" alt="d">

<div onclick="alert(7)" style="width: expression(alert(8))">div</div>

<p style="background:url(javascript:alert(9))" onmouseover="alert(10)">styled</p>

<iframe src="https://evil.example/"></iframe>

<object data="x.swf"></object><embed src="x.swf">

<svg><script>alert(11)</script><a xlink:href="javascript:alert(12)">s</a></svg>

<math><mi xlink:href="javascript:alert(13)">m</mi></math>

<form action="javascript:alert(14)"><input type="submit" formaction="javascript:alert(15)"></form>

<base href="javascript:alert(16)//">

<meta http-equiv="refresh" content="0;url=javascript:alert(17)">

<style>body{background:url("javascript:alert(18)")}</style>

<table background="javascript:alert(19)"><tr><td>t</td></tr></table>

[md](javascript:alert(20)) [md2](data:text/html;base64,PHNjcmlwdD4=) ![img](javascript:alert(21))
<javascript:alert(22)> [ref link][ref] [ok](https://example.org/fine)

[ref]: javascript:alert(23)
"""

EVIL_FRONT = {
    "title": "\"<script>alert('title')</script><img src=x onerror=alert(24)>\"",
    "summary": '"<iframe src=\\"javascript:alert(25)\\"></iframe><b onclick=alert(26)>s</b>"',
    "tags": '["<script>alert(27)</script>", "\\" onmouseover=\\"alert(28)"]',
    "authors": '["<svg onload=alert(29)>"]',
    "venue": '"<a href=javascript:alert(30)>v</a>"',
    "url": '"https://example.org/\\" onmouseover=\\"alert(31)"',
    "code": '"https://example.org/<script>alert(32)</script>"',
    "image": '"figure.png\\" onerror=\\"alert(33)"',
}
DANGEROUS_TAGS = {
    "script",
    "iframe",
    "object",
    "embed",
    "frame",
    "frameset",
    "applet",
    "base",
    "form",
    "svg",
    "math",
    "input",
    "button",
    "textarea",
    "select",
}
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "background",
    "poster",
    "data",
    "srcset",
    "xlink:href",
    "cite",
    "longdesc",
    "dynsrc",
    "lowsrc",
    "ping",
}
BAD_CSS = re.compile(
    r"expression\s*\(|javascript:|vbscript:|-moz-binding|behavior\s*:", re.IGNORECASE
)


def _scheme(url: str) -> str:
    """The scheme a browser would see: it drops whitespace and controls inside the URL."""
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", url).lower()
    m = re.match(r"([a-z][a-z0-9+.-]*):", cleaned)
    return m.group(1) if m else ""


class DangerScanner(HTMLParser):
    """Collects every construct that could run script; comments (MSO conditionals) are inert."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DANGEROUS_TAGS:
            self.found.append(f"<{tag}>")
        self._in_style = tag == "style"
        for name, value in attrs:
            value = value or ""
            if name.startswith("on"):
                self.found.append(f"{tag} {name}=")
            if name in URL_ATTRIBUTES and _scheme(value) in ("javascript", "vbscript", "data"):
                self.found.append(f"{tag} {name}={value[:30]}")
            if name == "style" and BAD_CSS.search(value):
                self.found.append(f"{tag} style={value[:30]}")
            if tag == "meta" and name == "http-equiv" and value.lower() == "refresh":
                self.found.append("meta refresh")

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style and BAD_CSS.search(data):
            self.found.append(f"<style>{data[:30]}")


def danger(html: str) -> list[str]:
    scanner = DangerScanner()
    scanner.feed(html)
    scanner.close()
    return scanner.found


def _feed_dangers(out: Path) -> dict[str, list[str]]:
    """Dangerous constructs in the HTML-bearing fields of the three feeds, and unsafe links."""
    found: dict[str, list[str]] = {}
    rss = ET.fromstring((out / "feed.xml").read_bytes())
    content = "{http://purl.org/rss/1.0/modules/content/}encoded"
    for item in rss.iter("item"):
        for tag in ("description", content):  # RSS readers render both as HTML
            found[f"rss {tag}"] = danger(item.findtext(tag) or "")
        for tag in ("link", "guid"):
            assert _scheme(item.findtext(tag) or "") in ("http", "https")
    atom_ns = "{http://www.w3.org/2005/Atom}"
    atom = ET.fromstring((out / "atom.xml").read_bytes())
    for entry in atom.iter(f"{atom_ns}entry"):
        for tag in ("content", "summary", "title"):
            for el in entry.iter(f"{atom_ns}{tag}"):
                kind = el.get("type", "text")
                text = ET.tostring(el, encoding="unicode") if kind == "xhtml" else el.text or ""
                found[f"atom {tag}"] = danger(text) if kind != "text" else []
        for link in entry.iter(f"{atom_ns}link"):
            assert _scheme(link.get("href", "")) in ("http", "https")
    feed = json.loads((out / "feed.json").read_bytes())
    for item in feed["items"]:
        found["json content_html"] = danger(item.get("content_html", ""))
        for key in ("url", "id", "image", "external_url"):
            if key in item:
                assert _scheme(item[key]) in ("http", "https"), item[key]
    for name in ("feed.xml", "atom.xml"):
        assert not feedparser.parse((out / name).read_bytes()).bozo, name
    return {k: v for k, v in found.items() if v}


def _evil_issue(fields: dict[str, str], body: str = EVIL_BODY) -> str:
    """An issue file: line 2 the date, then ``fields`` from line 3 on."""
    lines = ["---", "date: 2024-04-10"] + [f"{k}: {v}" for k, v in fields.items()] + ["---"]
    return "\n".join(lines) + "\n" + body


def test_no_script_reaches_email_archive_or_feeds(
    make_project: MakeProject, frozen_now: object
) -> None:
    config = make_project(
        {
            "issues/good.md": GOOD_ISSUE,
            "issues/evil.md": _evil_issue(EVIL_FRONT),
            "editions/2024-W15.md": "---\ntitle: \"<script>alert('note')</script>\"\n"
            'subject: "<img src=x onerror=alert(34)>"\n'
            'preheader: "<svg onload=alert(35)>"\n---\n' + EVIL_BODY,
        },
        config=BASE_CONFIG.replace('group_by = "week"', 'group_by = "week"\nsection_by = "tag"'),
    )
    result = run(config.root, "build")
    assert result.exit_code == 0, result.output
    out = config.root / "public"
    pages = sorted(p for p in out.rglob("*.html"))
    assert len(pages) == 3  # the archive, and the page and email of the one edition
    for page in pages:
        html = page.read_text("utf-8")
        assert danger(html) == [], (page, danger(html))
        # The attack text is still there, as text: the test really fed it through.
        if page.name == "index.html" and page.parent.name == "1":
            assert (
                "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in html
                or "&lt;script&gt;alert('title')&lt;/script&gt;" in html
            )
    assert _feed_dangers(out) == {}
    # The email as each recipient gets it (send's pre-send checks would stop this edition for
    # its broken links, so the messages are assembled directly).
    db = open_state(config)
    try:
        plan = plan_send(config, 1, db=db)
    finally:
        db.close()
    prepared = PreparedEdition(
        config, plan.rendered, Signer(SECRET.encode()), sent_at=datetime(2024, 6, 1, tzinfo=UTC)
    )
    msg = prepared.message("reader@example.org", "Reader")
    parts = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
    html = next(p for p in parts.walk() if p.get_content_type() == "text/html").get_content()
    assert danger(html) == [] and danger(msg.html) == []
    assert "alert(" in html  # the attack is there, as inert text


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("url", '"javascript:alert(1)"', "url: must be an absolute http(s) URL"),
        ("url", '" JaVaScRiPt:alert(1)"', "url: must be an absolute http(s) URL"),
        (
            "url",
            '"data:text/html,<script>alert(1)</script>"',
            "url: must be an absolute http(s) URL",
        ),
        ("code", '"javascript:alert(1)"', "code: not a safe link"),
        ("code", '"java\\tscript:alert(1)"', "code: not a safe link"),
        ("code", '"vbscript:msgbox(1)"', "code: not a safe link"),
        ("code", '"data:text/html,x"', "code: not a safe link"),
        ("image", '"javascript:alert(1)"', "image: must be a relative path or an http(s) URL"),
        ("image", '"data:image/svg+xml;base64,PHN2Zz4="', "image: must be a relative path"),
    ],
)
def test_script_links_in_front_matter_are_refused(
    site: Config, key: str, value: str, message: str
) -> None:
    assert run(site.root, "build").exit_code == 0
    before = snapshot(site.root / "public")
    (site.root / "issues" / "evil.md").write_text(
        _evil_issue({"title": '"Evil"', key: value}, "Body.\n"), "utf-8"
    )
    result = run(site.root, "build")
    assert_no_crash(result)
    assert result.exit_code == 1
    assert any(
        m.group(0).startswith(f"issues/evil.md:4: {message}") for m in located_lines(result.stderr)
    ), result.stderr
    assert snapshot(site.root / "public") == before
