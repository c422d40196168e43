"""The preview app through Starlette's TestClient: pages, errors, files, hosts, live reload."""

from __future__ import annotations

import html
import json
import os
import socket
import time
import warnings
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from newsletter.errors import ConfigError, NewsletterError
from newsletter.preview.app import create_app
from newsletter.preview.command import LOCAL_HOSTS, background_server, serve_preview
from newsletter.preview.transform import force_scheme
from newsletter.preview.watcher import Watcher
from tests.preview import SAMPLE_NOW, copy_sample

# Starlette 1.x asks for httpx2 in its TestClient (warning on import); httpx still works.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

MAMBA = "issues/2024/2024-04-11-mamba.md"
QLORA = "issues/2024/2024-04-15-qlora.md"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of the whole page."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def by_id(self, ident: str) -> dict[str, str | None] | None:
        return next((a for _, a in self.tags if a.get("id") == ident), None)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_sample(tmp_path / "project")


@pytest.fixture
def client(root: Path) -> Iterator[TestClient]:
    # watch=False: tests say when files changed (project.changed()); the watcher has its own test.
    with TestClient(create_app(root, watch=False, now=lambda: SAMPLE_NOW)) as c:
        yield c


def changed(client: TestClient) -> None:
    client.app.state.project.changed()  # type: ignore[attr-defined]


def test_index_lists_every_edition_with_drafts_and_the_open_one(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    page = Elements(r.text)
    rows = [a.get("data-number") for t, a in page.tags if t == "tr" and a.get("class") == "edition"]
    assert rows == ["4", "3", "2", "1"]
    text = " ".join(" ".join(page.text).split())
    assert "ML 论文周报 第4期" in text and "open · still collecting" in text
    assert "next to send" in text  # edition 3: the newest closed one
    # The draft issue is listed, marked, and in the open edition.
    assert "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models draft" in text
    assert "issues/2024/2024-04-30-chain-of-thought.md" in text
    assert 'id="error-overlay"' not in r.text


def test_edition_page_shows_both_widths_text_headers_web_page_and_feed(client: TestClient) -> None:
    r = client.get("/editions/2/")
    assert r.status_code == 200
    page = Elements(r.text)
    mobile, desktop = page.by_id("frame-mobile"), page.by_id("frame-desktop")
    assert mobile and mobile["width"] == "375" and mobile["src"] == "/editions/2/email.html?dark=0"
    assert desktop and desktop["width"] == "700"
    web = page.by_id("frame-web")
    assert web and web["src"] == "/site/editions/2/?dark=0"
    text = html.unescape(r.text)
    # Headers of the message one recipient gets, unsubscribe token and all.
    assert "ML 论文周报：QLoRA、Toolformer、思维树与 SAM，本周四篇精读" in text
    assert "ML 论文周报 <digest@papers.example.org>" in text
    assert "<https://papers.example.org/unsubscribe/" in text
    assert "<mailto:unsubscribe@papers.example.org?subject=unsubscribe%20" in text
    assert "List-Unsubscribe-Post" in text and "reader@example.org" in text
    assert "4 月 15 日至 21 日｜单卡微调、工具调用、树搜索推理与可提示分割" in text  # preheader
    # The plain-text part, with the recipient's unsubscribe link filled in.
    assert "QLoRA: Efficient Finetuning of Quantized LLMs" in text
    assert "退订: https://papers.example.org/unsubscribe/" in text
    assert "*|UNSUB|*" not in text
    # The feed entry is the JSON Feed item build_feeds writes.
    start = r.text.index('<pre class="feed-entry">') + len('<pre class="feed-entry">')
    item = json.loads(html.unescape(r.text[start : r.text.index("</pre>", start)]))
    assert item["id"] == item["url"] == "https://papers.example.org/editions/2/"
    assert item["title"] == "ML 论文周报 第2期"
    assert "No problems found" in text


def test_email_and_site_frames_serve_the_real_output_with_local_urls(client: TestClient) -> None:
    email = client.get("/editions/1/email.html?dark=0")
    assert email.status_code == 200
    assert "Mamba: Linear-Time Sequence Modeling with Selective State Spaces" in email.text
    assert "https://papers.example.org/unsubscribe/" not in email.text  # localized …
    assert "http://testserver/site/unsubscribe/" in email.text  # … token included
    figure = "http://testserver/site/assets/2024/figures/mamba-selective-ssm.svg"
    assert figure in email.text
    svg = client.get(figure)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert (
        svg.content
        == (
            Path(client.app.state.project.root)  # type: ignore[attr-defined]
            / "issues/2024/figures/mamba-selective-ssm.svg"
        ).read_bytes()
    )
    text = client.get("/editions/1/email.txt")
    assert text.headers["content-type"].startswith("text/plain")
    assert "https://papers.example.org/unsubscribe/" in text.text
    eml = client.get("/editions/1/message.eml")
    assert eml.headers["content-type"] == "message/rfc822"
    assert b"\r\nList-Unsubscribe: <https://papers.example.org/unsubscribe/" in eml.content
    web = client.get("/site/editions/1/")
    assert "<h1>ML 论文周报 第1期</h1>" in web.text
    assert client.get("/site/feed.json").json()["items"][0]["id"].startswith("https://papers.")
    assert client.get("/site/").status_code == 200


@pytest.mark.parametrize(
    "query,frames,width",
    [
        ("?view=mobile&width=700&dark=0", ["frame-mobile"], None),
        ("?view=desktop&width=800&dark=0", ["frame-desktop"], "800"),
        ("?view=both&width=600&dark=1", ["frame-mobile", "frame-desktop"], "600"),
        ("?view=nonsense&width=99999", ["frame-mobile", "frame-desktop"], "800"),
    ],
)
def test_view_and_width_toggles(
    client: TestClient, query: str, frames: list[str], width: str | None
) -> None:
    page = Elements(client.get("/editions/2/" + query).text)
    present = [f for f in ("frame-mobile", "frame-desktop") if page.by_id(f)]
    assert present == frames
    desktop = page.by_id("frame-desktop")
    assert (desktop or {}).get("width") == width
    dark = "dark=1" in query
    for frame in frames:
        assert (page.by_id(frame) or {})["src"] == f"/editions/2/email.html?dark={int(dark)}"
    # Every toggle link keeps the other settings, so a reload keeps the whole state.
    toggle = page.by_id("theme-dark")
    assert toggle and toggle["href"] is not None and "dark=1" in toggle["href"]


def test_dark_mode_applies_the_emails_own_dark_rules(client: TestClient) -> None:
    source = client.get("/site/editions/2/email.html").text
    assert "@media (prefers-color-scheme: dark)" in source  # the template's own rule
    dark = client.get("/editions/2/email.html?dark=1").text
    light = client.get("/editions/2/email.html?dark=0").text
    assert "prefers-color-scheme" not in dark and "prefers-color-scheme" not in light
    rule = ".page, .page > table, .card > table { background: #0d1117 !important; }"
    assert f"@media (min-width: 0px) {{\n        {rule}" in dark
    assert f"@media (max-width: 0px) {{\n        {rule}" in light
    assert ":root { color-scheme: dark; }" in dark


def test_force_scheme_rewrites_every_media_query_form() -> None:
    page = (
        "<html><head><style>@media screen and (prefers-color-scheme:dark){a{}}"
        "@media (PREFERS-COLOR-SCHEME: light){b{}}</style></head>"
        '<picture><source media="(prefers-color-scheme: dark)"></picture></html>'
    )
    dark = force_scheme(page, True)
    assert dark.count("(min-width: 0px)") == 2 and dark.count("(max-width: 0px)") == 1
    assert "<style>:root { color-scheme: dark; }</style></head>" in dark
    assert force_scheme("<p>no head</p>", False).startswith("<style>:root { color-scheme: light")


def test_issue_page(client: TestClient) -> None:
    r = client.get("/issues/2024-04-11-mamba/")
    assert r.status_code == 200
    text = html.unescape(r.text)
    assert MAMBA in text and "#1 ML 论文周报 第1期" in text
    frame = Elements(r.text).by_id("frame-issue")
    assert frame and frame["src"] == "/issues/2024-04-11-mamba/page?dark=0"
    page = client.get("/issues/2024-04-11-mamba/page?dark=1").text
    assert "Mamba: Linear-Time Sequence Modeling" in page
    assert "http://testserver/site/assets/2024/figures/mamba-selective-ssm.svg" in page
    assert client.get("/issues/no-such-issue/").status_code == 404
    assert client.get("/editions/99/").status_code == 404


def test_a_bad_issue_file_is_shown_in_the_page_and_the_server_recovers(
    client: TestClient, root: Path
) -> None:
    good = (root / MAMBA).read_text("utf-8")
    (root / MAMBA).write_text(good.replace("date: 2024-04-11", "date: 2024-13-45"), "utf-8")
    changed(client)
    for url in ("/", "/editions/2/", "/issues/2024-04-11-mamba/"):
        r = client.get(url)
        assert r.status_code == 200
        overlay = r.text[r.text.index('id="error-overlay"') :]
        assert f"{MAMBA}:3: date:" in html.unescape(overlay)
    assert client.get("/_reload").status_code == 200  # still answering
    (root / MAMBA).write_text(good, "utf-8")
    changed(client)
    r = client.get("/editions/2/")
    assert 'id="error-overlay"' not in r.text and "frame-mobile" in r.text


def test_template_errors_name_the_template_line(client: TestClient, root: Path) -> None:
    template = root / "templates" / "email.txt.j2"
    template.write_text(
        "{{ edition.title }}\n{{ unsubscribe_url }}\n{{ no_such_thing }}\n", "utf-8"
    )
    changed(client)
    r = client.get("/editions/2/")
    assert r.status_code == 200
    errors = html.unescape(r.text[r.text.index('<pre class="errors">') :])
    assert (
        "templates/email.txt.j2:3: unknown template variable: 'no_such_thing' is undefined"
        in errors
    )
    index = client.get("/")
    assert "does not render" in index.text and 'id="error-overlay"' in index.text


def test_config_errors_are_escaped_in_the_overlay(client: TestClient, root: Path) -> None:
    config = root / "config.toml"
    config.write_text(
        config.read_text("utf-8").replace(
            'language = "zh-CN"', 'language = "zh-CN"\n"<script>alert(1)</script>" = 1'
        ),
        "utf-8",
    )
    changed(client)
    r = client.get("/")
    assert r.status_code == 200
    assert "<script>alert(1)" not in r.text
    # A quoted key has no line of its own to point at: the message points at its table.
    assert (
        "config.toml:5: [newsletter] &lt;script&gt;alert(1)&lt;/script&gt;: unknown key" in r.text
    )


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../etc/passwd",
        "/site/../../etc/passwd",
        "/site/%2e%2e/%2e%2e/etc/passwd",
        "/site/assets/..%2f..%2fconfig.toml",
        "/site/assets/%2e%2e/%2e%2e/config.toml",
        "/site/assets/2024/%2e%2e/%2e%2e/%2e%2e/config.toml",
        "/site/..%5c..%5cconfig.toml",
        "/site/%2fetc%2fpasswd",
        "/site//etc/passwd",
        "/site/assets/2024/2024-04-11-mamba.md",  # issue sources are not published
        "/site/assets/2024/figures/mamba-selective-ssm.svg%00.png",
        "/site/leak.txt",  # a symlink out of the project
    ],
)
def test_no_file_outside_what_the_build_publishes(
    client: TestClient, root: Path, path: str
) -> None:
    (root.parent / "secret.txt").write_text("top secret", "utf-8")
    (root / "static").mkdir()
    os.symlink(root.parent / "secret.txt", root / "static" / "leak.txt")
    (root / "static" / "robots.txt").write_text("User-agent: *\n", "utf-8")
    changed(client)
    r = client.get(path)
    assert r.status_code == 404
    assert b"secret" not in r.content and b"root:" not in r.content
    assert b"[newsletter]" not in r.content
    assert client.get("/site/robots.txt").text == "User-agent: *\n"  # static files do work


def test_the_preview_never_writes_the_site_or_sends(client: TestClient, root: Path) -> None:
    for url in (
        "/",
        "/editions/1/",
        "/editions/4/",
        "/editions/4/message.eml",
        "/site/",
        "/site/feed.xml",
        "/issues/2024-04-11-mamba/page",
    ):
        assert client.get(url).status_code == 200
    assert not (root / "public").exists()
    assert not (root / "outbox").exists()


def test_reload_reports_a_new_version_after_a_change(client: TestClient) -> None:
    before = client.get("/_reload").json()["version"]
    assert client.get("/_reload").json()["version"] == before
    page = client.get("/editions/1/").text
    assert f'data-version="{before}"' in page
    changed(client)
    assert client.get("/_reload").json()["version"] != before


def test_watcher_sees_saves_but_not_editor_droppings(tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    calls: list[float] = []
    with Watcher(
        lambda: [tmp_path / "issues", tmp_path / "config.toml"],
        lambda: calls.append(time.monotonic()),
        interval=0.05,
    ):
        time.sleep(0.2)  # the watcher takes its first picture of the files
        (tmp_path / "issues" / ".a.md.swp").write_text("x", "utf-8")
        (tmp_path / "issues" / "a.md~").write_text("x", "utf-8")
        time.sleep(0.4)
        assert calls == []
        (tmp_path / "config.toml").write_text("x", "utf-8")
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) == 1


def test_binds_loopback_by_default_and_refuses_other_host_names(root: Path) -> None:
    with background_server(root, watch=False, now=lambda: SAMPLE_NOW) as url:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client() as http:
            assert http.get(url + "_reload").status_code == 200
            # DNS rebinding: a page on another name pointed at 127.0.0.1 gets nothing.
            evil = http.get(url + "editions/1/", headers={"Host": "evil.example"})
            assert evil.status_code == 400
    assert "localhost" in LOCAL_HOSTS


def test_busy_port_and_missing_config_are_clear_errors(root: Path, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = rf"port {port} on 127\.0\.0\.1 is already in use"
        with pytest.raises(NewsletterError, match=busy):
            serve_preview(root, "127.0.0.1", port, False)
    with pytest.raises(ConfigError, match=r"config\.toml: not found"):
        serve_preview(tmp_path / "empty", "127.0.0.1", 0, False)
