"""create_issue: a loadable file in issues/<YYYY>/, YAML-safe values, never an overwrite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter import clock
from newsletter.config import Config
from newsletter.content import create_issue, load_issues
from newsletter.errors import ContentError
from tests.content import make_project

WHEN = datetime(2024, 4, 14, 20, 30, tzinfo=UTC)  # 2024-04-15 04:30 in Shanghai


@pytest.fixture
def project(tmp_path: Path) -> Config:
    return make_project(tmp_path, {})


def test_writes_a_template_in_the_newsletter_zone(project: Config) -> None:
    path = create_issue(
        project,
        "Attention Is All You Need",
        url="https://arxiv.org/abs/1706",
        when=WHEN,
        tags=["llm", "no"],
    )
    assert path == project.root / "issues" / "2024" / "2024-04-15-attention-is-all-you-need.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith(
        "---\ntitle: Attention Is All You Need\ndate: 2024-04-15T04:30:00+08:00\n"
        "url: https://arxiv.org/abs/1706\ntags: [llm, 'no']\n---\n\n"
    )
    [loaded] = load_issues(project)
    assert loaded.title == "Attention Is All You Need"
    assert loaded.date == WHEN
    assert loaded.tags == ("llm", "no")
    assert loaded.slug == "2024-04-15-attention-is-all-you-need"


def test_never_overwrites(project: Config) -> None:
    paths = [create_issue(project, "Same title", when=WHEN) for _ in range(3)]
    assert [p.name for p in paths] == [
        "2024-04-15-same-title.md",
        "2024-04-15-same-title-2.md",
        "2024-04-15-same-title-3.md",
    ]
    paths[0].write_text("mine", encoding="utf-8")
    create_issue(project, "Same title", when=WHEN)
    assert paths[0].read_text(encoding="utf-8") == "mine"


def test_tricky_titles_round_trip(project: Config) -> None:
    titles = [
        "no",
        "1.10",
        "2024-01-01",
        "title: with colon",
        "- dash",
        "'quoted' \"both\"",
        "注意力机制：综述",
        "# hash",
        "yes & no",
        "@at",
        "  padded  ",
    ]
    for n, title in enumerate(titles):
        create_issue(project, title, when=WHEN + timedelta(days=n))
    loaded = load_issues(project)
    assert [i.title for i in loaded] == [t.strip() for t in titles]
    assert loaded[6].path == "issues/2024/2024-04-21-issue.md"


def test_when_defaults_to_the_clock(project: Config) -> None:
    clock.set_clock(lambda: datetime(2025, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=-8))))
    try:
        path = create_issue(project, "Now")
    finally:
        clock.set_clock(None)
    assert path.name == "2025-01-01-now.md"
    assert "date: 2025-01-01T17:00:00+08:00\n" in path.read_text(encoding="utf-8")


def test_naive_when_is_in_the_newsletter_zone(project: Config) -> None:
    path = create_issue(project, "Naive", when=datetime(2024, 12, 31, 23, 0))
    assert path.parent.name == "2024"
    assert "date: 2024-12-31T23:00:00+08:00\n" in path.read_text(encoding="utf-8")


def test_line_breaks_and_empty_titles_are_refused(project: Config) -> None:
    with pytest.raises(ContentError, match="title must be a single line"):
        create_issue(project, "a\nb", when=WHEN)
    with pytest.raises(ContentError, match="title must not be empty"):
        create_issue(project, "   ", when=WHEN)
    with pytest.raises(ContentError, match="url must be an absolute http"):
        create_issue(project, "T", url="javascript:alert(1)", when=WHEN)
    assert not (project.root / "issues").exists()


def test_long_titles_give_short_file_names(project: Config) -> None:
    path = create_issue(project, "word " * 40, when=WHEN)
    assert len(path.stem) <= len("2024-04-15-") + 60
    assert path.stem.endswith("-word")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    title=st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1).filter(
        lambda t: t.strip() and "\x85" not in t
    )
)
def test_any_single_line_title_round_trips(project: Config, title: str) -> None:
    for old in (project.root / "issues").rglob("*.md"):
        old.unlink()
    create_issue(project, title, when=WHEN)
    [loaded] = load_issues(project)
    assert loaded.title == title.strip()
