"""Stage "group": cadence, stable numbering, open editions, sections, notes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.editions import group, load_lock, save_lock
from newsletter.errors import ContentError
from newsletter.pipeline import load_and_group
from tests.conftest import MakeProject, issue

NOW = datetime(2024, 6, 1, tzinfo=UTC)


def _files(*specs: tuple[str, str]) -> dict[str, str]:
    return {f"issues/{slug}.md": issue(slug.title(), date, tags="[llm]") for slug, date in specs}


def test_weekly_grouping_uses_local_weeks_and_numbers_oldest_first(make_project: MakeProject):
    # 2024-04-14 23:30 in Shanghai is still Sunday: it belongs to the week of April 8.
    config = make_project(
        _files(
            ("a", "2024-04-09"),
            ("b", '"2024-04-14T23:30:00+08:00"'),
            ("c", "2024-04-15"),
            ("d", "2024-04-25"),
        )
    )
    g = load_and_group(config, now=NOW, use_cache=False)
    assert [(e.number, e.key, [i.slug for i in e.issues]) for e in g.editions] == [
        (1, "2024-W15", ["a", "b"]),
        (2, "2024-W16", ["c"]),
        (3, "2024-W17", ["d"]),
    ]
    first = g.editions[0]
    assert (first.start.isoformat(), first.end.isoformat()) == ("2024-04-08", "2024-04-14")
    assert first.title == "Test Digest #1"
    assert first.preheader == "2024-04-08 to 2024-04-14"


def test_numbers_are_stable_when_an_older_week_is_added_later(make_project: MakeProject):
    config = make_project(_files(("b", "2024-04-16"), ("c", "2024-04-23")))
    g = load_and_group(config, now=NOW, use_cache=False)
    save_lock(config, g)
    assert {e.key: e.number for e in g.editions} == {"2024-W16": 1, "2024-W17": 2}
    (config.root / "issues" / "old.md").write_text(issue("Old", "2024-04-02"), encoding="utf-8")
    g2 = load_and_group(config, now=NOW, use_cache=False)
    # The published numbers stay; the newly discovered older week gets the next free number.
    assert {e.key: e.number for e in g2.editions} == {"2024-W14": 3, "2024-W16": 1, "2024-W17": 2}


def test_removing_an_edition_never_renumbers_the_others(make_project: MakeProject):
    config = make_project(_files(("a", "2024-04-09"), ("b", "2024-04-16"), ("c", "2024-04-23")))
    save_lock(config, load_and_group(config, now=NOW, use_cache=False))
    (config.root / "issues" / "b.md").unlink()
    g = load_and_group(config, now=NOW, use_cache=False)
    assert {e.key: e.number for e in g.editions} == {"2024-W15": 1, "2024-W17": 3}
    assert load_lock(config)["2024-W16"] == 2  # the number stays reserved


def test_open_week_is_left_out_unless_drafts_and_never_locked(make_project: MakeProject):
    config = make_project(_files(("a", "2024-05-20"), ("b", "2024-05-30")))
    now = datetime(2024, 5, 31, 12, tzinfo=UTC)  # Friday: the week of May 27 is still open
    g = load_and_group(config, now=now, use_cache=False)
    assert [e.key for e in g.editions] == ["2024-W21"]
    g2 = load_and_group(config, now=now, drafts=True, use_cache=False)
    assert [(e.key, e.is_open, e.draft) for e in g2.editions] == [
        ("2024-W21", False, False),
        ("2024-W22", True, True),
    ]
    assert g2.lock == {"2024-W21": 1}


def test_week_closes_at_local_midnight(make_project: MakeProject):
    config = make_project(_files(("a", "2024-05-20")))
    # Sunday 2024-05-26 23:59 Shanghai = 15:59 UTC: still open; 16:00 UTC: closed.
    assert (
        load_and_group(
            config, now=datetime(2024, 5, 26, 15, 59, tzinfo=UTC), use_cache=False
        ).editions
        == ()
    )
    assert (
        len(
            load_and_group(
                config, now=datetime(2024, 5, 26, 16, 0, tzinfo=UTC), use_cache=False
            ).editions
        )
        == 1
    )


def test_drafts_are_excluded_by_default(make_project: MakeProject):
    files = _files(("a", "2024-04-09"))
    files["issues/d.md"] = issue("Draft", "2024-04-10", draft="true")
    config = make_project(files)
    g = load_and_group(config, now=NOW, use_cache=False)
    assert [i.slug for i in g.editions[0].issues] == ["a"]
    g2 = load_and_group(config, now=NOW, drafts=True, use_cache=False)
    assert [i.slug for i in g2.editions[0].issues] == ["a", "d"]


def test_monthly_sections_follow_the_configured_order(make_project: MakeProject):
    files = {
        "issues/a.md": issue("A", "2024-03-03", tags="[vision]"),
        "issues/b.md": issue("B", "2024-03-10", tags="[llm, rl]"),
        "issues/c.md": issue("C", "2024-03-20"),
        "issues/d.md": issue("D", "2024-03-21", tags="[agents]"),
        "issues/e.md": issue("E", "2024-04-02", tags="[llm]"),
    }
    config = make_project(files, extra_config="")
    text = config.path.read_text().replace(
        'group_by = "week"',
        'group_by = "month"\nsection_by = "tag"\nsection_order = ["llm", "vision"]',
    )
    config.path.write_text(text)
    from newsletter.config import load_config

    config = load_config(config.root, environ={})
    g = load_and_group(config, now=NOW, use_cache=False)
    march = g.editions[0]
    assert (march.key, march.start.isoformat(), march.end.isoformat()) == (
        "2024-03",
        "2024-03-01",
        "2024-03-31",
    )
    assert [(s.title, [i.slug for i in s.issues]) for s in march.sections] == [
        ("llm", ["b"]),
        ("vision", ["a"]),
        ("agents", ["d"]),
        ("Other", ["c"]),
    ]


def test_explicit_editions_use_the_edition_key(make_project: MakeProject):
    config = make_project(
        {
            "issues/a.md": issue("A", "2024-03-03", edition="7"),
            "issues/b.md": issue("B", "2024-03-30", edition="7"),
            "issues/c.md": issue("C", "2024-03-10", edition="8"),
        }
    )
    text = config.path.read_text().replace('group_by = "week"', 'group_by = "explicit"')
    config.path.write_text(text)
    from newsletter.config import load_config

    config = load_config(config.root, environ={})
    g = load_and_group(config, now=NOW, use_cache=False)
    assert [(e.number, [i.slug for i in e.issues]) for e in g.editions] == [
        (7, ["a", "b"]),
        (8, ["c"]),
    ]


def test_explicit_grouping_requires_the_edition_key(make_project: MakeProject):
    config = make_project({"issues/a.md": issue("A", "2024-03-03")})
    config.path.write_text(config.path.read_text().replace('"week"', '"explicit"'))
    from newsletter.config import load_config

    config = load_config(config.root, environ={})
    with pytest.raises(ContentError) as err:
        load_and_group(config, now=NOW, use_cache=False)
    assert "issues/a.md:2: edition: required" in err.value.lines()[0]


def test_note_sets_subject_preheader_and_intro(make_project: MakeProject):
    files = _files(("a", "2024-04-09"))
    files["editions/2024-W15.md"] = (
        '---\nsubject: "Special: agents week"\npreheader: "Five papers"\n---\nHello **all**.\n'
    )
    config = make_project(files)
    ed = load_and_group(config, now=NOW, use_cache=False).editions[0]
    assert ed.subject == "Special: agents week"
    assert ed.preheader == "Five papers"
    assert "<strong>all</strong>" in ed.intro_html
    assert ed.note_path == "editions/2024-W15.md"


def test_group_issue_per_edition(make_project: MakeProject):
    config = make_project(_files(("a", "2024-04-09"), ("b", "2024-04-09")))
    config.path.write_text(config.path.read_text().replace('"week"', '"issue"'))
    from newsletter.config import load_config

    config = load_config(config.root, environ={})
    g = group(
        load_and_group(config, now=NOW, use_cache=False).editions[0].issues
        + load_and_group(config, now=NOW, use_cache=False).editions[1].issues,
        config,
        now=NOW,
    )
    assert [(e.number, e.key) for e in g.editions] == [(1, "a"), (2, "b")]
