"""Security guarantees: header injection, script in outputs, tokens, secrets, SMTP AUTH, hosts.

No line break reaches a header, no script reaches an email, page or feed, tokens cannot be
forged or replayed, secrets appear nowhere, credentials never cross an unencrypted connection
unless told to, and the local servers listen on loopback by default.
"""

from __future__ import annotations

import base64
import email.policy
import hmac
import importlib.util
import inspect
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.parser import BytesHeaderParser, BytesParser
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import feedparser
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from newsletter.config import Config
from newsletter.deliver.message import EditionMessage, PreparedEdition
from newsletter.deliver.ratelimit import VirtualTimer
from newsletter.deliver.send import SendReport, open_state, plan_send, send_edition
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus
from newsletter.senders.base import Message, Result
from newsletter.senders.memory import MemorySender
from newsletter.senders.postmark import PostmarkSender
from newsletter.state import subscribers
from newsletter.state.db import Database
from newsletter.state.ledger import Ledger
from newsletter.state.schema import deliveries
from newsletter.state.schema import subscribers as subscribers_table
from newsletter.tokens import TOKEN_LENGTH, Signer
from tests.conftest import BASE_CONFIG, MakeProject, issue
from tests.reliability import SECRET, assert_no_crash, located_lines, run, snapshot
from tests.smtpd_fixture import PASSWORD, SMTPServer, make_smtp_server

__all__ = ["make_smtp_server"]  # the fixture, imported until a conftest registers the plugin

SEND_ENV = {"NEWSLETTER_SECRET": SECRET}
INJECTED = "Bcc: victim@example.org"
# Every character that ends a line somewhere: SMTP (CR, LF), Python's str.splitlines (VT, FF,
# NEL, LS, PS), and NUL, which C mail software may treat as the end of the string.
BREAKS = {"crlf": "\r\n", "lf": "\n", "cr": "\r", "nul": "\x00", "nel": "\x85",
          "ls": "\u2028", "ps": "\u2029", "vt": "\x0b", "ff": "\x0c"}
YAML_ESCAPE = {"\r\n": "\\r\\n", "\n": "\\n", "\r": "\\r", "\x00": "\\0", "\x85": "\\N",
               "\u2028": "\\L", "\u2029": "\\P", "\x0b": "\\v", "\x0c": "\\f"}
GOOD_ISSUE = issue("Good paper", "2024-04-09", "Fine.", url="https://arxiv.org/abs/1")


class WireSender(MemorySender):
    """A MemorySender that serializes every message first, as SMTP and the outbox do."""

    def __init__(self) -> None:
        super().__init__(fail=self._serialize)
        self.wire: list[bytes] = []

    def _serialize(self, msg: Message) -> Result | None:
        self.wire.append(msg.as_bytes())
        return None


def _send(config: Config, db: Database, sender: Any, **kw: Any) -> SendReport:
    plan = plan_send(config, 1, db=db)
    return send_edition(config, plan, db=db, sender=sender, environ=SEND_ENV,
                        timer=VirtualTimer(), **kw)


@pytest.fixture
def site(make_project: MakeProject, frozen_now: object) -> Config:
    return make_project({"issues/good.md": GOOD_ISSUE})


@pytest.fixture
def state(site: Config) -> Iterator[Database]:
    db = open_state(site)
    for i in range(3):
        subscribers.add(db, f"reader{i}@example.org", f"Reader {i}")
    yield db
    db.close()


def _headers(raw: bytes) -> list[tuple[str, str]]:
    """The header fields as a strict reader sees them on the wire: unfolded, not decoded."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    msg = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
    return [(k, re.sub(r"\r\n[ \t]", " ", str(v))) for k, v in msg.items()]


EXPECTED_HEADERS = {"From", "Subject", "Date", "List-Id", "To", "Message-ID", "List-Unsubscribe",
                    "List-Unsubscribe-Post", "MIME-Version", "Content-Type"}


def _assert_clean_wire(raw: bytes, recipient: str) -> None:
    """The header block holds exactly our headers, once each, and one recipient."""
    names = [k for k, _ in _headers(raw)]
    assert sorted(names) == sorted(EXPECTED_HEADERS), names
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head.replace(b"\r\n", b"")
    assert all(line.startswith((b" ", b"\t")) or b":" in line for line in head.split(b"\r\n"))
    assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b"")
    to = dict(_headers(raw))["To"]
    assert to.endswith(f"<{recipient}>") or to == recipient, to


# --- header injection -----------------------------------------------------------------------


@pytest.mark.parametrize("brk", list(BREAKS.values()), ids=list(BREAKS))
@pytest.mark.parametrize(("rel", "key"), [("issues/evil.md", "title"),
                                          ("editions/2024-W15.md", "subject"),
                                          ("editions/2024-W15.md", "title"),
                                          ("editions/2024-W15.md", "preheader")])
def test_line_breaks_in_titles_and_subjects_are_refused(site: Config, state: Database, rel: str,
                                                       key: str, brk: str) -> None:
    value = f'"Hello{YAML_ESCAPE[brk]}{INJECTED}"'
    text = f"---\n{key}: {value}\n" + ("date: 2024-04-10\n" if rel.startswith("issues") else "")
    (site.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (site.root / rel).write_text(text + "---\nBody.\n", "utf-8")
    for args in (["check"], ["send", "1", "--yes"]):
        result = run(site.root, *args)
        assert_no_crash(result)
        assert result.exit_code == 1, result.output
        problems = [m.group(0) for m in located_lines(result.stderr)]
        assert f"{rel}:2: {key}: must be a single line (no line breaks or control characters)" \
            in problems, result.stderr
    assert not (site.root / "outbox").exists()
    assert Ledger(state).summary(1).total == 0


def _set_key(text: str, section: str, key: str, value: str) -> tuple[str, int]:
    """``text`` with ``key = value`` as the first line of ``[section]`` (any old one removed),
    and the number of that line."""
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")),
               len(lines))
    body = [line for line in lines[start + 1:end] if not line.startswith(f"{key} = ")]
    lines[start + 1:end] = [f"{key} = {value}", *body]
    return "\n".join(lines) + "\n", start + 2


@pytest.mark.parametrize(("section", "key"), [("email", "from"), ("email", "list_id"),
                                              ("email", "reply_to"), ("newsletter", "title"),
                                              ("editions", "subject"), ("editions", "title")])
def test_line_breaks_in_config_header_values_are_refused(site: Config, state: Database,
                                                        section: str, key: str) -> None:
    text, line = _set_key(site.path.read_text("utf-8"), section, key,
                          f'"A <a@example.org>\\r\\n{INJECTED}"')
    site.path.write_text(text, "utf-8")
    result = run(site.root, "send", "1", "--yes")
    assert_no_crash(result)
    assert result.exit_code == 1
    assert f"config.toml:{line}: [{section}] {key}: must not contain line breaks" \
        in result.stderr.splitlines(), result.stderr
    assert not (site.root / "outbox").exists()


def test_line_breaks_from_environment_overrides_are_refused(site: Config, state: Database) -> None:
    result = run(site.root, "send", "1", "--yes",
                 env={"NEWSLETTER_EMAIL__FROM": f"A <a@example.org>\r\n{INJECTED}"})
    assert result.exit_code == 1
    assert "[email] from: must not contain line breaks" in result.stderr
    assert not (site.root / "outbox").exists()


@pytest.mark.parametrize("key", ["subject", "title"])
def test_a_line_break_made_by_a_date_format_never_reaches_the_wire(
        make_project: MakeProject, frozen_now: object, key: str) -> None:
    """strftime's %n passes every text check; the message assembly is the last line of defence
    (check_header), and it must refuse the whole send."""
    config = make_project({"issues/good.md": GOOD_ISSUE},
                          config=BASE_CONFIG.replace('title = "Test Digest #{number}"',
                                                     f'{key} = "Hi{{start:%n}}{INJECTED}"'))
    db = open_state(config)
    try:
        subscribers.add(db, "reader@example.org")
        sender = WireSender()
        with pytest.raises(NewsletterError, match="Subject header contains a line break"):
            _send(config, db, sender)
        assert sender.wire == [] and sender.attempts == 0
        assert Ledger(db).summary(1).sent == 0
    finally:
        db.close()
    result = run(config.root, "send", "1", "--yes")
    assert result.exit_code == 1 and "Subject header contains a line break" in result.stderr
    assert not list((config.root / "outbox").rglob("*.eml"))


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\x00"], ids=["crlf", "lf", "cr", "nul"])
def test_line_breaks_in_subscriber_names_and_addresses_are_refused(site: Config, state: Database,
                                                                   brk: str) -> None:
    added = run(site.root, "subscribers", "add", "eve@example.org", "--name",
                f"Eve{brk}{INJECTED}")
    assert added.exit_code == 1 and "contains a line break or control character" in added.stderr
    added = run(site.root, "subscribers", "add", f"eve@example.org{brk}{INJECTED}")
    assert added.exit_code == 1 and "invalid email address" in added.stderr
    csv_file = site.root / "evil.csv"
    csv_file.write_text("email,name\n"
                        f'"mallory@example.org","M{brk}{INJECTED}"\n'
                        f'"trudy@example.org{brk}{INJECTED}",T\n'
                        "ok@example.org,Fine\n", "utf-8", newline="")
    imported = run(site.root, "subscribers", "import", str(csv_file))
    assert imported.exit_code == 1
    assert {int(m["line"]) for m in located_lines(imported.stderr)} == {2, 3 + (brk in "\r\n")}
    assert subscribers.get(state, "mallory@example.org") is None
    assert subscribers.get(state, "ok@example.org") is not None
    test = run(site.root, "send", "1", "--to", f"me@example.org{brk}{INJECTED}")
    assert test.exit_code == 1, test.output
    assert not list((site.root / "outbox").rglob("*.eml"))
    seen: list[dict[str, Any]] = []  # an HTTP API never serializes MIME here: refuse earlier
    with pytest.raises(NewsletterError):
        send_edition(site, plan_send(site, 1, db=state), db=state, sender=_postmark(seen),
                     environ=SEND_ENV, to=[f"me@example.org{brk}{INJECTED}"])
    assert seen == []


def _tamper(db: Database, email_addr: str, name: str) -> None:
    """Write a subscriber row straight into the table, as a damaged or hand-edited database
    might hold it: the validation of `subscribers add` never saw it."""
    from newsletter import clock

    with db.transaction() as conn:
        conn.execute(insert(subscribers_table).values(
            email=email_addr, email_key=email_addr.lower(), name=name, tags="", status="active",
            source="tampered", created_at=clock.now(), updated_at=clock.now()))


def _postmark(seen: list[dict[str, Any]]) -> PostmarkSender:
    """A Postmark sender whose API accepts everything and keeps each message's JSON."""

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        seen.extend(batch)
        return httpx.Response(200, json=[{"ErrorCode": 0, "Message": "OK", "MessageID": str(i),
                                          "To": m["To"]} for i, m in enumerate(batch)])

    return PostmarkSender("pm-token", client=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("kind", ["wire", "postmark"])
@pytest.mark.parametrize("field", ["name", "address"])
def test_a_tampered_subscriber_row_cannot_inject_headers(site: Config, state: Database,
                                                         field: str, kind: str) -> None:
    """A damaged or hand-edited database bypasses `subscribers add`: message assembly must
    still refuse the line break, whether the sender serializes MIME or posts JSON."""
    evil = "eve@example.org"
    if field == "name":
        _tamper(state, evil, f"Eve\r\n{INJECTED}")
    else:
        evil = f"eve@example.org\r\n{INJECTED}"
        _tamper(state, evil, "Eve")
    seen: list[dict[str, Any]] = []
    sender = WireSender() if kind == "wire" else _postmark(seen)
    with pytest.raises(NewsletterError, match="line break"):
        _send(site, state, sender)
    if isinstance(sender, WireSender):
        for raw, msg in zip(sender.wire, sender.sent, strict=True):
            _assert_clean_wire(raw, msg.recipient)
    assert not any("\r" in m["To"] or "\n" in m["To"] for m in seen), seen
    with state.connect() as conn:
        status = conn.execute(select(deliveries.c.status)
                              .where(deliveries.c.email == evil)).scalar_one()
    assert status == DeliveryStatus.PENDING


HOSTILE_NAMES = ['Eve "Bcc: victim@example.org"', "Mallory <mallory@evil.example>",
                 "=?utf-8?q?x=0D=0ABcc:_victim@example.org?=", "Ünïcödé, Jr. 周",
                 "a" * 200, "Trudy (comment) ;:,@<>[]"]


def test_hostile_but_valid_names_stay_inside_the_to_header(site: Config, state: Database) -> None:
    for i, name in enumerate(HOSTILE_NAMES):
        subscribers.add(state, f"hostile{i}@example.org", name)
    sender = WireSender()
    report = _send(site, state, sender)
    assert report.run.sent == 3 + len(HOSTILE_NAMES)
    for raw, msg in zip(sender.wire, sender.sent, strict=True):
        _assert_clean_wire(raw, msg.recipient)


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
    "title": '"<script>alert(\'title\')</script><img src=x onerror=alert(24)>"',
    "summary": '"<iframe src=\\"javascript:alert(25)\\"></iframe><b onclick=alert(26)>s</b>"',
    "tags": '["<script>alert(27)</script>", "\\" onmouseover=\\"alert(28)"]',
    "authors": '["<svg onload=alert(29)>"]',
    "venue": '"<a href=javascript:alert(30)>v</a>"',
    "url": '"https://example.org/\\" onmouseover=\\"alert(31)"',
    "code": '"https://example.org/<script>alert(32)</script>"',
    "image": '"figure.png\\" onerror=\\"alert(33)"',
}
DANGEROUS_TAGS = {"script", "iframe", "object", "embed", "frame", "frameset", "applet", "base",
                  "form", "svg", "math", "input", "button", "textarea", "select"}
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "background", "poster", "data",
                  "srcset", "xlink:href", "cite", "longdesc", "dynsrc", "lowsrc", "ping"}
BAD_CSS = re.compile(r"expression\s*\(|javascript:|vbscript:|-moz-binding|behavior\s*:",
                     re.IGNORECASE)


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


def test_no_script_reaches_email_archive_or_feeds(make_project: MakeProject,
                                                 frozen_now: object) -> None:
    config = make_project({
        "issues/good.md": GOOD_ISSUE,
        "issues/evil.md": _evil_issue(EVIL_FRONT),
        "editions/2024-W15.md": "---\ntitle: \"<script>alert('note')</script>\"\n"
                                "subject: \"<img src=x onerror=alert(34)>\"\n"
                                "preheader: \"<svg onload=alert(35)>\"\n---\n" + EVIL_BODY,
    }, config=BASE_CONFIG.replace('group_by = "week"', 'group_by = "week"\nsection_by = "tag"'))
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
            assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in html \
                or "&lt;script&gt;alert('title')&lt;/script&gt;" in html
    assert _feed_dangers(out) == {}
    # The email as each recipient gets it (send's pre-send checks would stop this edition for
    # its broken links, so the messages are assembled directly).
    db = open_state(config)
    try:
        plan = plan_send(config, 1, db=db)
    finally:
        db.close()
    prepared = PreparedEdition(config, plan.rendered, Signer(SECRET.encode()),
                               sent_at=datetime(2024, 6, 1, tzinfo=UTC))
    msg = prepared.message("reader@example.org", "Reader")
    parts = BytesParser(policy=email.policy.default).parsebytes(msg.as_bytes())
    html = next(p for p in parts.walk() if p.get_content_type() == "text/html").get_content()
    assert danger(html) == [] and danger(msg.html) == []
    assert "alert(" in html  # the attack is there, as inert text


@pytest.mark.parametrize(("key", "value", "message"), [
    ("url", '"javascript:alert(1)"', "url: must be an absolute http(s) URL"),
    ("url", '" JaVaScRiPt:alert(1)"', "url: must be an absolute http(s) URL"),
    ("url", '"data:text/html,<script>alert(1)</script>"', "url: must be an absolute http(s) URL"),
    ("code", '"javascript:alert(1)"', "code: not a safe link"),
    ("code", '"java\\tscript:alert(1)"', "code: not a safe link"),
    ("code", '"vbscript:msgbox(1)"', "code: not a safe link"),
    ("code", '"data:text/html,x"', "code: not a safe link"),
    ("image", '"javascript:alert(1)"', "image: must be a relative path or an http(s) URL"),
    ("image", '"data:image/svg+xml;base64,PHN2Zz4="', "image: must be a relative path"),
])
def test_script_links_in_front_matter_are_refused(site: Config, key: str, value: str,
                                                  message: str) -> None:
    assert run(site.root, "build").exit_code == 0
    before = snapshot(site.root / "public")
    (site.root / "issues" / "evil.md").write_text(
        _evil_issue({"title": '"Evil"', key: value}, "Body.\n"), "utf-8")
    result = run(site.root, "build")
    assert_no_crash(result)
    assert result.exit_code == 1
    assert any(m.group(0).startswith(f"issues/evil.md:4: {message}")
               for m in located_lines(result.stderr)), result.stderr
    assert snapshot(site.root / "public") == before


# --- unsubscribe and confirmation tokens ----------------------------------------------------

KEY = b"token-test-secret-0123456789abcdef"
ADDRESS = "Ada@Example.org"


@pytest.fixture
def signer() -> Signer:
    return Signer(KEY)


def test_a_genuine_token_verifies_for_its_purpose_and_address_only(signer: Signer) -> None:
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    assert len(token) == TOKEN_LENGTH
    data = signer.verify(token, "unsubscribe", ADDRESS)
    assert data is not None and (data.subscriber_id, data.stamp) == (42, 7)
    assert signer.verify(token, "unsubscribe", " ada@example.ORG ") is not None  # same address
    assert signer.verify(token, "unsubscribe", "eve@example.org") is None  # replayed elsewhere
    assert signer.verify(token, "unsubscribe", "ada@example.org.evil") is None
    assert signer.verify(token, "confirm", ADDRESS) is None  # another purpose
    confirm = signer.make("confirm", 42, 7, ADDRESS)
    assert signer.verify(confirm, "confirm", ADDRESS) is not None
    assert signer.verify(confirm, "unsubscribe", ADDRESS) is None
    assert Signer(b"another-secret-0123456789abcdef").verify(token, "unsubscribe",
                                                             ADDRESS) is None


def test_every_single_bit_flip_is_refused(signer: Signer) -> None:
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for i in range(len(raw)):
        for bit in range(8):
            forged = bytearray(raw)
            forged[i] ^= 1 << bit
            text = base64.urlsafe_b64encode(bytes(forged)).decode().rstrip("=")
            for purpose in ("unsubscribe", "confirm"):
                assert signer.verify(text, purpose, ADDRESS) is None, (i, bit, purpose)


def test_wrong_lengths_and_garbage_are_refused(signer: Signer) -> None:
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    for bad in ("", token[:-1], token + "A", token + "=", token[1:], "=" * 40, "é" * 40,
                token[:-2] + "==", token.replace(token[5], "+" if token[5] != "+" else "/"),
                token[:20] + "\x00" + token[21:], token * 2, " " + token[1:]):
        for purpose in ("unsubscribe", "confirm"):
            assert signer.verify(bad, purpose, ADDRESS) is None, bad


@settings(max_examples=200, deadline=None, database=None)
@given(raw=st.binary(min_size=30, max_size=30), text=st.text(min_size=40, max_size=40),
       purpose=st.sampled_from(["unsubscribe", "confirm"]))
def test_random_tokens_are_refused(raw: bytes, text: str, purpose: str) -> None:
    signer = Signer(KEY)
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert signer.verify(forged, purpose, ADDRESS) is None
    assert signer.verify(text, purpose, ADDRESS) is None


def test_tokens_are_checked_with_compare_digest_alone(signer: Signer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The MAC is compared by hmac.compare_digest (constant time), and nothing else decides:
    a forged MAC passes when compare_digest is made to say yes, and a genuine one fails when
    it says no."""
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    calls: list[tuple[bytes, bytes]] = []
    answer = [True]

    def compare_digest(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return answer[0]

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 0xFF
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert signer.verify(forged, "unsubscribe", ADDRESS) is not None
    assert len(calls) == 1 and len(calls[0][0]) == len(calls[0][1]) == 16
    answer[0] = False
    assert signer.verify(token, "unsubscribe", ADDRESS) is None
    assert len(calls) == 2


def test_tokens_in_sent_mail_verify_for_their_recipient_only(site: Config,
                                                             state: Database) -> None:
    sender = WireSender()
    _send(site, state, sender)
    signer = Signer(SECRET.encode())
    for msg in sender.sent:
        assert isinstance(msg, EditionMessage)
        token = msg.unsubscribe_url.rsplit("/", 1)[1]
        assert signer.verify(token, "unsubscribe", msg.recipient) is not None
        others = [m.recipient for m in sender.sent if m.recipient != msg.recipient]
        assert all(signer.verify(token, "unsubscribe", o) is None for o in others)


# --- secrets --------------------------------------------------------------------------------

SMTP_USER = "ada"
POSTMARK_TOKEN = "pm-server-token-5ecret-77f1"


def _secret_forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")]


def _assert_nowhere(secrets: list[str], texts: dict[str, str], folder: Path) -> None:
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"{secret!r} in {where}"
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for form in _secret_forms(secret):
                    assert form not in data, f"{secret!r} in {path}"


def test_secrets_never_reach_logs_messages_outputs_or_the_database(
        make_project: MakeProject, frozen_now: object, make_smtp_server: Any,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    server: SMTPServer = make_smtp_server(starttls=False, auth_over_plain=True)
    config = make_project({"issues/good.md": GOOD_ISSUE}, extra_config=f"""
[sender]
kind = "smtp"
concurrency = 2

[sender.smtp]
host = "127.0.0.1"
port = {server.port}
security = "none"
username = "{SMTP_USER}"
password_env = "SMTP_PW"
timeout = 5
""")
    env = {"SMTP_PW": PASSWORD, "POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}
    caplog.set_level(logging.DEBUG)
    texts: dict[str, str] = {}
    assert run(config.root, "subscribers", "add", "reader@example.org").exit_code == 0
    for args in (["build"], ["send", "1", "--yes"], ["send", "1", "--dry-run"],
                 ["send", "1", "--to", "me@example.org"], ["status", "1"]):
        result = run(config.root, *args, env=env)
        assert result.exit_code == 0, result.output
        texts[" ".join(args)] = result.output
    assert len(server.messages) == 2 and server.messages[0].login == SMTP_USER

    # A provider that refuses the token and echoes it back (as some error bodies do).
    def refuse(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Postmark-Server-Token"] == POSTMARK_TOKEN
        return httpx.Response(401, json={"ErrorCode": 10, "Message":
                                         f"Bad or missing Server API token {POSTMARK_TOKEN}"})

    monkeypatch.setattr("newsletter.senders.http.make_client", lambda timeout=30.0: httpx.Client(
        transport=httpx.MockTransport(refuse)))
    assert run(config.root, "subscribers", "add", "second@example.org").exit_code == 0
    refused = run(config.root, "send", "1", "--yes", "--sender", "postmark", env=env)
    assert refused.exit_code == 1 and "refused the credentials (HTTP 401)" in refused.stderr
    texts["send --sender postmark"] = refused.output

    # Per-message errors echoing the token are stored in the ledger: they must be masked too.
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text=f"upstream said: {POSTMARK_TOKEN} overloaded")

    monkeypatch.setattr("newsletter.senders.http.make_client", lambda timeout=30.0: httpx.Client(
        transport=httpx.MockTransport(echo)))
    config.path.write_text(config.path.read_text("utf-8").replace("concurrency = 2",
                                                                  "concurrency = 2\n"
                                                                  "max_attempts = 1"), "utf-8")
    failed = run(config.root, "send", "1", "--yes", "--sender", "postmark", env=env)
    texts["send --sender postmark (503)"] = failed.output
    assert "***" in run(config.root, "status", "1").stdout
    texts["logs"] = caplog.text
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    _assert_nowhere([SECRET, PASSWORD, POSTMARK_TOKEN], texts, config.root)


# --- SMTP credentials -----------------------------------------------------------------------


def _smtp_site(make_project: MakeProject, port: int, security: str) -> Config:
    return make_project({"issues/good.md": GOOD_ISSUE}, extra_config=f"""
[sender]
kind = "smtp"

[sender.smtp]
host = "127.0.0.1"
port = {port}
security = "{security}"
username = "ada"
password_env = "SMTP_PW"
timeout = 5
""")


def test_smtp_never_sends_credentials_unencrypted_unless_told_to(
        make_project: MakeProject, frozen_now: object, make_smtp_server: Any) -> None:
    """A server without STARTTLS that would accept AUTH in plain text (as a downgrading
    attacker's would): the default security refuses before AUTH, and only an explicit
    security = "none" logs in."""
    server: SMTPServer = make_smtp_server(starttls=False, auth_over_plain=True)
    config = _smtp_site(make_project, server.port, "starttls")
    assert run(config.root, "subscribers", "add", "reader@example.org").exit_code == 0
    env = {"SMTP_PW": PASSWORD}
    refused = run(config.root, "send", "1", "--yes", env=env)
    assert refused.exit_code == 1, refused.output
    assert "does not offer STARTTLS; refusing to send unencrypted" in refused.stderr
    assert server.auth_attempts == [] and server.messages == []
    assert PASSWORD not in refused.output
    config.path.write_text(config.path.read_text("utf-8").replace('"starttls"', '"none"'),
                           "utf-8")
    sent = run(config.root, "send", "1", "--yes", env=env)
    assert sent.exit_code == 0, sent.output
    assert len(server.auth_attempts) == 1 and server.auth_attempts[0].endswith(" ada")
    assert [m.login for m in server.messages] == ["ada"]


# --- listening addresses --------------------------------------------------------------------


def test_serve_listens_on_loopback_by_default(site: Config,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("newsletter.cli_serve") is None:
        pytest.skip("newsletter/cli_serve.py does not exist yet")
    import uvicorn

    import newsletter.cli_serve  # noqa: F401 - registers `serve` (as cli.py will)

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    result = run(site.root, "serve")
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "127.0.0.1"


def test_preview_listens_on_loopback_by_default() -> None:
    from newsletter.cli import cli
    from newsletter.preview import command

    assert inspect.signature(command.background_server).parameters["host"].default == \
        "127.0.0.1"
    preview = cli.commands["preview"]
    host = next(p for p in preview.params if p.name == "host")
    assert host.default == "127.0.0.1"
