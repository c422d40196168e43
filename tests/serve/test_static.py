"""The archive and feeds from public/: content types, caching, 304s, no traversal; health."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import Config
from newsletter.senders.memory import MemorySender
from newsletter.serve.app import create_app
from newsletter.serve.settings import ServeSettings
from newsletter.state.db import Database
from tests.conftest import MakeProject, issue
from tests.serve.conftest import ENV, MakeService, Service, TestClient

FILES = {
    "index.html": "<h1>Archive</h1>",
    "feed.xml": "<rss/>",
    "atom.xml": "<feed/>",
    "feed.json": "{}",
    "editions/1/index.html": "<h1>Edition 1</h1>",
    "editions/1/email.txt": "plain",
    "assets/2024/figure.png": "\x89PNG",
    "style.css": "body{}",
    ".secret": "do not serve",
    "editions/.hidden/index.html": "nope",
}


@pytest.fixture
def site(config: Config, make_service: MakeService) -> Service:
    for rel, text in FILES.items():
        path = config.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (config.root / "secret.txt").write_text("outside public/", encoding="utf-8")
    return make_service()


@pytest.mark.parametrize(
    "path, media_type, cache",
    [
        ("/", "text/html; charset=utf-8", "public, max-age=300"),
        ("/feed.xml", "application/rss+xml; charset=utf-8", "public, max-age=300"),
        ("/atom.xml", "application/atom+xml; charset=utf-8", "public, max-age=300"),
        ("/feed.json", "application/feed+json; charset=utf-8", "public, max-age=300"),
        ("/editions/1/", "text/html; charset=utf-8", "public, max-age=300"),
        ("/editions/1/email.txt", "text/plain; charset=utf-8", "public, max-age=300"),
        ("/assets/2024/figure.png", "image/png", "public, max-age=86400"),
        ("/style.css", "text/css; charset=utf-8", "public, max-age=86400"),
    ],
)
def test_content_types_and_cache_headers(site: Service, path: str, media_type: str, cache: str):
    answer = site.client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == media_type
    assert answer.headers["cache-control"] == cache
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["etag"] and answer.headers["last-modified"]


def test_content_is_the_file(site: Service):
    assert site.client.get("/").text == "<h1>Archive</h1>"
    assert site.client.get("/editions/1/").text == "<h1>Edition 1</h1>"


def test_etag_and_last_modified_give_304(site: Service):
    first = site.client.get("/feed.xml")
    again = site.client.get("/feed.xml", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["cache-control"] == "public, max-age=300"
    since = site.client.get(
        "/feed.xml", headers={"If-Modified-Since": first.headers["last-modified"]}
    )
    assert since.status_code == 304
    changed = site.client.get("/feed.xml", headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200


def test_head_has_headers_and_no_body(site: Service):
    answer = site.client.head("/feed.json")
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["content-length"] == "2"


def test_directory_redirect_is_relative_whatever_the_host(site: Service):
    answer = site.client.get(
        "/editions/1", headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert answer.status_code == 301 and answer.headers["location"] == "/editions/1/"


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/editions/..%2f..%2f..%2fsecret.txt",
        "/editions/1/../../../secret.txt",
        "//etc/passwd",
        "/.secret",
        "/editions/.hidden/",
        "/editions/%00",
        "/nothing-here",
    ],
)
def test_no_traversal_no_hidden_files(site: Service, path: str):
    answer = site.client.get(path, follow_redirects=False)
    assert answer.status_code == 404, path
    assert "outside public" not in answer.text and "do not serve" not in answer.text


def test_without_a_built_site_pages_are_404_and_the_forms_still_work(service: Service):
    assert not service.config.out_dir.exists()
    home = service.client.get("/")
    assert home.status_code == 404 and "Page not found" in home.text
    assert service.client.get("/subscribe").status_code == 200


def test_static_files_are_read_only(site: Service):
    assert site.client.post("/feed.xml").status_code == 405


def test_healthz_reports_the_database(site: Service, tmp_path: Path):
    answer = site.client.get("/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "db": "ok"}
    services = site.client.app.state.services  # type: ignore[attr-defined]
    good = services.db_
    services.db_ = Database(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'state.db'}")
    try:
        broken = site.client.get("/healthz")
    finally:
        services.db_.close()
        services.db_ = good
    assert broken.status_code == 503 and broken.json() == {"status": "error", "db": "error"}


def test_the_site_is_built_at_startup_when_public_is_missing(make_project: MakeProject):
    project = make_project(
        {"issues/a.md": issue("Attention", "2024-04-09", url="https://arxiv.org/abs/1706.03762")}
    )
    app = create_app(project, sender=MemorySender(), environ=ENV, settings=ServeSettings())
    assert not (project.out_dir / "index.html").exists()
    with TestClient(app) as client:
        home = client.get("/")
        feed = client.get("/feed.xml")
    assert home.status_code == 200 and "Test Digest" in home.text
    assert feed.status_code == 200 and "Attention" in feed.text
    assert feed.headers["content-type"] == "application/rss+xml; charset=utf-8"
