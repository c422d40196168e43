"""load_issues and load_notes: discovery, slugs, sorting, drafts, and all problems at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from newsletter.content import load_issues, load_notes
from newsletter.content.issues import derive_slug
from newsletter.errors import ContentError
from tests.content import CONFIG, issue, make_project


def dated(title: str, day: str, extra: str = "") -> str:
    return issue(f"title: {title}\ndate: {day}\n{extra}")


def test_finds_markdown_files_sorted_and_skips_hidden_and_underscored(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/2024/b.md": dated("B", "2024-01-02"),
            "issues/2024/a.md": dated("A", "2024-01-02"),
            "issues/top.md": dated("Top", "2023-12-31"),
            "issues/_drafts/x.md": "broken",
            "issues/.git/y.md": "broken",
            "issues/_partial.md": "broken",
            "issues/.hidden.md": "broken",
            "issues/2024/notes.txt": "not markdown",
            "issues/2024/fig.png": b"\x89PNG",
        },
    )
    loaded = load_issues(config)
    assert [i.path for i in loaded] == ["issues/top.md", "issues/2024/a.md", "issues/2024/b.md"]
    assert [i.slug for i in loaded] == ["top", "a", "b"]  # (date, slug) order


def test_missing_issues_dir_means_no_issues(tmp_path: Path) -> None:
    assert load_issues(make_project(tmp_path, {})) == []


def test_digest_is_the_sha256_of_the_file_bytes(tmp_path: Path) -> None:
    text = dated("A", "2024-01-02")
    [loaded] = load_issues(make_project(tmp_path, {"issues/a.md": text}))
    assert loaded.digest == hashlib.sha256(text.encode()).hexdigest()


def test_assets_resolve_against_the_issue_directory(tmp_path: Path) -> None:
    text = dated("A", "2024-01-02", "image: cover.png\n") + "![f](figs/f.png) [home](/)\n"
    config = make_project(
        tmp_path,
        {
            "issues/2024/春季/a.md": text,
            "issues/b.md": dated("B", "2024-01-03", "image: https://cdn.example.com/b.png\n")
            + "![g](g.png)\n",
        },
    )
    a, b = load_issues(config)
    base = "https://example.org/digest/assets/2024/%E6%98%A5%E5%AD%A3/"
    assert a.image == base + "cover.png"
    assert f'<img src="{base}figs/f.png" alt="f" />' in a.body_html
    assert '<a href="https://example.org/digest/" rel="noopener">home</a>' in a.body_html
    assert b.image == "https://cdn.example.com/b.png"
    assert '<img src="https://example.org/digest/assets/g.png" alt="g" />' in b.body_html


def test_slugs_from_file_stems() -> None:
    from datetime import datetime

    when = datetime(2024, 4, 15)
    assert derive_slug("Attention Is All_You Need!", when) == "attention-is-all-you-need"
    assert derive_slug("Café Über", when) == "cafe-uber"
    chinese = derive_slug("注意力机制", when)
    assert chinese == "2024-04-15-" + hashlib.sha256("注意力机制".encode()).hexdigest()[:8]
    assert derive_slug("注意力机制", when) == chinese  # stable
    assert derive_slug("gpt-4-技术报告", when).startswith("gpt-4-")
    assert derive_slug("gpt-4-技术报告", when) != derive_slug("gpt-4-评测", when)
    # NFD file names (macOS) give the same slug as NFC ones.
    assert derive_slug("注意力机制", when) == derive_slug("注意力机制".encode().decode(), when)


def test_chinese_file_names_get_date_and_hash_slugs(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/几何.md": dated("几何", "2024-01-17"),
            "issues/代数.md": dated("代数", "2024-01-17"),
        },
    )
    slugs = {i.title: i.slug for i in load_issues(config)}
    assert slugs["几何"].startswith("2024-01-17-") and len(slugs["几何"]) == 19
    assert slugs["几何"] != slugs["代数"]


def test_duplicate_slugs_name_both_files(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/2023/attention.md": dated("A", "2023-01-01"),
            "issues/2024/attention.md": dated("B", "2024-01-01"),
            "issues/2024/other.md": dated("C", "2024-01-02", "slug: attention\n"),
        },
    )
    with pytest.raises(ContentError) as info:
        load_issues(config)
    assert info.value.lines() == [
        "issues/2024/attention.md:1: duplicate slug 'attention': issues/2023/attention.md has "
        "it too (set a different `slug:` in one of them)",
        "issues/2024/other.md:4: duplicate slug 'attention': issues/2023/attention.md has it "
        "too (set a different `slug:` in one of them)",
        "2 problems in issue files",
    ]


def test_every_broken_file_is_reported_in_one_error(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/a.md": "no front matter",
            "issues/b.md": dated("B", "2024-13-01"),
            "issues/c.md": issue("title: [unclosed\ndate: 2024-01-01\n"),
            "issues/d.md": dated("D", "2024-01-01", "draft: sometimes\nyear: MMXXIV\n"),
            "issues/ok.md": dated("OK", "2024-01-01"),
        },
    )
    with pytest.raises(ContentError) as info:
        load_issues(config)
    error = info.value
    assert error.message == "5 problems in issue files"
    assert [(p.path, p.line) for p in error.problems] == [
        ("issues/a.md", 1),
        ("issues/b.md", 3),
        ("issues/c.md", 3),
        ("issues/d.md", 4),
        ("issues/d.md", 5),
    ]
    assert "date: invalid date '2024-13-01' (month must be in 1..12)" in str(error.problems[1])


def test_drafts_can_be_left_out(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/a.md": dated("A", "2024-01-01", "draft: true\n"),
            "issues/b.md": dated("B", "2024-01-02"),
        },
    )
    assert [i.slug for i in load_issues(config)] == ["a", "b"]
    assert [i.slug for i in load_issues(config, drafts=False)] == ["b"]


def test_issues_dir_is_configurable(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {"content/posts/a.md": dated("A", "2024-01-01")},
        CONFIG + '[build]\nissues_dir = "content/posts"\n',
    )
    [loaded] = load_issues(config)
    assert loaded.path == "content/posts/a.md"


def test_notes_load_with_optional_front_matter(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "editions/2024-W16.md": "---\nsubject: 第16周：几何\npreheader: AlphaGeometry\n---\n"
            "本周**精选**。![c](cover.png)[^1]\n\n[^1]: 注\n",
            "editions/12.md": "Just an intro.\n",
            "editions/_skip.md": "---\nbad: [\n",
        },
    )
    notes = load_notes(config)
    assert list(notes) == ["12", "2024-W16"]
    week = notes["2024-W16"]
    assert (week.path, week.key, week.subject, week.preheader, week.title) == (
        "editions/2024-W16.md",
        "2024-W16",
        "第16周：几何",
        "AlphaGeometry",
        None,
    )
    assert week.intro_html.startswith(
        '<p>本周<strong>精选</strong>。<img src="https://example.org/digest/assets/cover.png" '
        'alt="c" /><sup class="footnote-ref"><a href="#note-2024-w16-fn-1"'
    )
    assert notes["12"].intro_html == "<p>Just an intro.</p>"
    assert notes["12"].subject is None
    assert len(week.digest) == 64


def test_no_notes_dir_means_no_notes(tmp_path: Path) -> None:
    assert load_notes(make_project(tmp_path, {})) == {}


def test_note_problems_are_all_reported(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "editions/a.md": "---\nsubjet: Hi\ntitle: |\n  two\n  lines\n---\n",
            "editions/b.md": "---\npreheader: [x\n---\n",
            "editions/c.md": "---\nsubject: ok\n",
        },
    )
    with pytest.raises(ContentError) as info:
        load_notes(config)
    found = [str(p) for p in info.value.problems]
    assert found[:2] == [
        "editions/a.md:2: subjet: unknown key (did you mean 'subject'?)",
        "editions/a.md:3: title: must be a single line (no line breaks or control characters)",
    ]
    assert found[2].startswith("editions/b.md:3: invalid YAML: ")
    assert found[2].endswith("(while parsing a flow sequence started on line 2)")
    assert found[3] == "editions/c.md:1: front matter is not closed: add a '---' line after it"
    assert len(found) == 4
