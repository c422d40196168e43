"""Stages render + publish end to end: outputs, determinism, atomicity, incremental rebuilds."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest

from newsletter.errors import ContentError, PublishError, TemplateError
from newsletter.pipeline import build
from newsletter.publish import writer
from tests.conftest import MakeProject, issue

NOW = datetime(2024, 6, 1, tzinfo=UTC)
GOLDEN = Path(__file__).parent / "golden" / "site"

FILES = {
    "issues/2024/a.md": issue(
        "Attention Is All You Need",
        "2024-04-09",
        "Intro with [a link](https://example.com) and ![fig](fig.png).\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\nNote[^1].\n\n[^1]: Footnote.",
        url="https://arxiv.org/abs/1706.03762",
        authors="[Ashish Vaswani, Noam Shazeer]",
        venue="NeurIPS",
        year="2017",
        code="https://github.com/tensorflow/tensor2tensor",
        tags="[architectures, attention]",
    ),
    "issues/2024/b.md": issue(
        "检索增强生成",
        "2024-04-10",
        "中文摘要：**检索**与生成。",
        url="https://arxiv.org/abs/2005.11401",
        tags="[retrieval]",
        summary="把检索结果接入生成模型。",
    ),
    "issues/2024/c.md": issue(
        "Second week <&> item", "2024-04-17", "Body of c.", url="https://example.org/c"
    ),
    "issues/2024/fig.png": "not really a png",
}


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_build_writes_every_output(make_project: MakeProject):
    config = make_project(FILES)
    report = build(config, now=NOW)
    out = config.out_dir
    assert report.editions == 2 and report.rendered == [1, 2]
    assert sorted(_tree(out)) == [
        "assets/2024/fig.png",
        "atom.xml",
        "editions/1/email.html",
        "editions/1/email.txt",
        "editions/1/index.html",
        "editions/2/email.html",
        "editions/2/email.txt",
        "editions/2/index.html",
        "feed.json",
        "feed.xml",
        "index.html",
    ]
    index = (out / "index.html").read_text()
    assert index.index("Test Digest #2") < index.index("Test Digest #1")  # newest first
    feeds = (("rss+xml", "feed.xml"), ("atom+xml", "atom.xml"), ("feed+json", "feed.json"))
    for kind, href in feeds:
        assert f'type="application/{kind}"' in index
        assert f'href="https://digest.example.org/{href}"' in index
    page = (out / "editions/1/index.html").read_text()
    assert "检索增强生成" in page and "把检索结果接入生成模型。" in page
    assert 'src="https://digest.example.org/assets/2024/fig.png"' in page
    assert "<table>" in page and "Footnote." in page
    assert 'href="https://digest.example.org/editions/2/"' in page  # pager → next edition
    email = (out / "editions/1/email.html").read_text()
    assert email.startswith("<!doctype html>") or email.lower().startswith("<!doctype html>")
    assert 'href="*|UNSUB|*"' in email and "View in browser" in email
    assert "prefers-color-scheme: dark" in email
    assert len(email.encode()) < 102 * 1024
    text = (out / "editions/1/email.txt").read_text()
    assert "Unsubscribe: *|UNSUB|*" in text
    assert "Paper: https://arxiv.org/abs/1706.03762" in text
    assert "Second week <&> item" in (out / "editions/2/email.txt").read_text()  # not escaped
    assert "Second week &lt;&amp;&gt; item" in (out / "editions/2/email.html").read_text()


def test_every_feed_entry_links_to_an_existing_archive_page(make_project: MakeProject):
    config = make_project(FILES)
    build(config, now=NOW)
    out = config.out_dir
    for name in ("feed.xml", "atom.xml"):
        parsed = feedparser.parse((out / name).read_bytes())
        assert not parsed.bozo, name
        assert len(parsed.entries) == 2
        for entry in parsed.entries:
            rel = entry.link.removeprefix(config.base_url)
            assert (out / rel / "index.html").is_file(), entry.link
    data = json.loads((out / "feed.json").read_text())
    for item in data["items"]:
        assert (out / item["url"].removeprefix(config.base_url) / "index.html").is_file()


def test_builds_are_byte_identical(make_project: MakeProject, tmp_path: Path):
    config = make_project(FILES)
    build(config, now=NOW, out=tmp_path / "one")
    shutil.rmtree(config.state_dir)  # no cache: a cold build must give the same bytes
    build(config, now=NOW, out=tmp_path / "two")
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_rebuild_reuses_unchanged_editions(make_project: MakeProject):
    config = make_project(FILES)
    build(config, now=NOW)
    again = build(config, now=NOW)
    assert again.up_to_date and again.rendered == []
    before = _tree(config.out_dir)
    path = config.root / "issues/2024/c.md"
    path.write_text(path.read_text().replace("Body of c.", "Edited body."), encoding="utf-8")
    report = build(config, now=NOW)
    assert report.rendered == [2] and report.reused == 1
    after = _tree(config.out_dir)
    assert after["editions/1/email.html"] == before["editions/1/email.html"]
    assert b"Edited body." in after["editions/2/index.html"]
    assert b"Edited body." in after["feed.xml"]


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        (
            "issues/2024/bad.md",
            "---\ntitle: [unclosed\ndate: 2024-04-09\n---\nx\n",
            "issues/2024/bad.md:3:",
        ),
        ("issues/2024/bad.md", "---\ndate: 2024-04-09\n---\nx\n", "issues/2024/bad.md:1:"),
        (
            "issues/2024/bad.md",
            '---\ntitle: "T"\ndate: 2024-02-30\n---\nx\n',
            "issues/2024/bad.md:3:",
        ),
        ("issues/2024/bad.md", issue("Dup", "2024-04-09", slug="a"), "issues/2024/bad.md"),
    ],
)
def test_bad_input_leaves_previous_output_untouched(
    make_project: MakeProject, rel: str, text: str, expected: str
):
    config = make_project(FILES)
    build(config, now=NOW)
    before = _tree(config.out_dir)
    (config.root / rel).write_text(text, encoding="utf-8")
    with pytest.raises(ContentError) as err:
        build(config, now=NOW)
    assert any(line.startswith(expected) for line in err.value.lines()), err.value.lines()
    assert _tree(config.out_dir) == before


def test_template_errors_name_the_template_and_line(make_project: MakeProject):
    config = make_project(FILES)
    build(config, now=NOW)
    before = _tree(config.out_dir)
    tpl = config.root / "templates" / "partials"
    tpl.mkdir(parents=True)
    (tpl / "issue.html.j2").write_text(
        "<article>\n{{ issue.title }}\n{{ no_such_thing }}\n</article>\n", encoding="utf-8"
    )
    with pytest.raises(TemplateError) as err:
        build(config, now=NOW)
    assert err.value.problems[0].path == "templates/partials/issue.html.j2"
    assert err.value.problems[0].line == 3
    assert "no_such_thing" in err.value.problems[0].message
    assert _tree(config.out_dir) == before


def test_broken_mjml_is_a_template_error(make_project: MakeProject):
    config = make_project(FILES)
    (config.root / "templates").mkdir()
    (config.root / "templates" / "email.mjml.j2").write_text(
        "<mjml><mj-body><mj-section><mj-column>\n<mj-text><p>{{ edition.title }}"
        '<a href="{{ unsubscribe_url }}">u</a></mj-text>\n</mj-column></mj-section></mj-body>'
        "</mjml>\n",
        encoding="utf-8",
    )
    with pytest.raises(TemplateError) as err:
        build(config, now=NOW)
    message = err.value.lines()[0]
    assert message.startswith("templates/email.mjml.j2: MJML error:")
    assert "generated MJML line 2" in message
    assert not config.out_dir.exists()


def test_templates_override_package_defaults_file_by_file(make_project: MakeProject):
    config = make_project(FILES)
    (config.root / "templates").mkdir()
    (config.root / "templates" / "index.html.j2").write_text(
        "custom index: {% for e in editions %}{{ e.title }};{% endfor %}", encoding="utf-8"
    )
    build(config, now=NOW)
    assert (
        config.out_dir / "index.html"
    ).read_text() == "custom index: Test Digest #2;Test Digest #1;"
    assert "<!DOCTYPE html>" in (config.out_dir / "editions/1/index.html").read_text()


def test_disk_full_while_writing_keeps_previous_output(
    make_project: MakeProject, monkeypatch: pytest.MonkeyPatch
):
    config = make_project(FILES)
    build(config, now=NOW)
    before = _tree(config.out_dir)
    (config.root / "issues/2024/c.md").write_text(issue("Changed", "2024-04-17"), "utf-8")
    real_write = writer.SiteWriter.write

    def full(self: writer.SiteWriter, rel: str, data: bytes | str) -> None:
        if rel == "feed.xml":
            import errno

            raise writer._error(OSError(errno.ENOSPC, "No space left on device"), self.out / rel)
        real_write(self, rel, data)

    monkeypatch.setattr(writer.SiteWriter, "write", full)
    with pytest.raises(PublishError, match="the disk is full"):
        build(config, now=NOW)
    assert _tree(config.out_dir) == before
    assert not list(config.out_dir.parent.glob(".public.staging*"))
    monkeypatch.setattr(writer.SiteWriter, "write", real_write)
    rerun = build(config, now=NOW)  # the rerun succeeds (edition 2 comes from the render cache)
    assert rerun.reused == 1 and not rerun.up_to_date
    assert b"Changed" in (config.out_dir / "editions/2/index.html").read_bytes()


def test_crash_between_renames_is_recovered(make_project: MakeProject):
    config = make_project(FILES)
    build(config, now=NOW)
    before = _tree(config.out_dir)
    old = config.out_dir.parent / ".public.old"
    config.out_dir.rename(old)  # as if killed right after moving public/ aside
    writer.recover(config.out_dir)
    assert _tree(config.out_dir) == before


def test_golden_site(make_project: MakeProject, request: pytest.FixtureRequest):
    """The whole output of a small site, byte for byte (regenerate with --update-golden)."""
    config = make_project(FILES)
    build(config, now=NOW)
    got = _tree(config.out_dir)
    if request.config.getoption("--update-golden"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for rel, data in got.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_bytes(data)
    assert GOLDEN.is_dir(), "no golden files: run pytest --update-golden once, on purpose"
    expected = _tree(GOLDEN)
    assert sorted(got) == sorted(expected)
    for rel in sorted(expected):
        assert got[rel] == expected[rel], f"{rel} differs from tests/golden/site/{rel}"


def test_sample_project_builds(tmp_path: Path):
    """The repository's own example newsletter builds cleanly (what the Quick start runs)."""
    from newsletter.config import load_config

    root = Path(__file__).resolve().parent.parent
    site = tmp_path / "sample"
    for name in ("config.toml", "editions.lock"):
        shutil.copy(root / name, site / name) if site.exists() else (
            site.mkdir(),
            shutil.copy(root / name, site / name),
        )
    for name in ("issues", "editions"):
        shutil.copytree(root / name, site / name)
    config = load_config(site, environ={})
    report = build(config, now=NOW)
    assert report.editions >= 3
    html = (config.out_dir / "index.html").read_text()
    assert re.search(r"ML 论文周报 第\d+期", html)
    parsed = feedparser.parse((config.out_dir / "feed.xml").read_bytes())
    assert not parsed.bozo and len(parsed.entries) == report.editions


def test_a_ten_paper_edition_stays_under_gmail_clipping(make_project: MakeProject):
    body = (
        "这一段用中文概述论文的方法与结果，并附上[链接](https://example.org/x)。\n\n"
        "- first point with **bold** text\n- second point\n\n| a | b |\n|---|---|\n"
        "| 1 | 2 |\n\n"
    ) * 12
    assert 1500 < len(body.encode()) < 3000
    files = {
        f"issues/p{i}.md": issue(
            f"Paper number {i} with a realistically long title",
            f"2024-04-{9 + i % 5:02d}",
            body,
            url=f"https://arxiv.org/abs/2404.{i:05d}",
            authors="[Ada Lovelace, Alan Turing, Grace Hopper]",
            venue="NeurIPS",
            year="2024",
            code=f"https://github.com/example/p{i}",
            summary="一句话概要：这篇论文做了什么。",
            tags="[llm]",
        )
        for i in range(10)
    }
    config = make_project(files)
    build(config, now=NOW)
    size = len((config.out_dir / "editions/1/email.html").read_bytes())
    assert size < 102 * 1024, f"{size} bytes: Gmail clips it"


def test_a_foreign_folder_is_never_replaced(make_project: MakeProject, tmp_path: Path):
    config = make_project(FILES)
    documents = tmp_path / "Documents"
    documents.mkdir()
    (documents / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(PublishError, match="was not written by a build"):
        build(config, now=NOW, out=documents)
    assert (documents / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build(config, now=NOW, out=empty).editions == 2  # an empty folder is fine
