"""Front matter: fences, YAML traps, typed keys and the exact path:line of every problem."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from newsletter.content import load_issues
from newsletter.errors import ContentError
from newsletter.models import Issue
from tests.content import issue, make_project

GOOD = "title: A paper\ndate: 2024-04-15\n"


def load_one(tmp_path: Path, text: str | bytes, name: str = "issues/a.md") -> Issue:
    config = make_project(tmp_path, {name: text})
    [loaded] = load_issues(config)
    return loaded


def problems(tmp_path: Path, files: dict[str, str | bytes]) -> list[str]:
    config = make_project(tmp_path, files)
    with pytest.raises(ContentError) as info:
        load_issues(config)
    assert all(p.path and p.line for p in info.value.problems), info.value.lines()
    return [str(p) for p in info.value.problems]


def test_a_full_issue_is_read_into_typed_fields(tmp_path: Path) -> None:
    text = issue(
        "title: Solving olympiad geometry\n"
        "date: 2024-01-17T09:30:00\n"
        "url: https://www.nature.com/articles/x\n"
        "authors: [Trieu Trinh, Thang Luong]\n"
        "venue: Nature\n"
        "year: 2024\n"
        "code: 无\n"
        "tags: [math, reasoning]\n"
        "summary: >\n  Two\n  lines.\n"
        "edition: 3\n"
        "section: Papers\n"
        "draft: TRUE\n"
        "slug: alphageometry\n"
        "reviewer: {name: Li, score: 4.5, ok: false}\n"
    )
    got = load_one(tmp_path, text)
    assert got.title == "Solving olympiad geometry"
    assert got.date == datetime(2024, 1, 17, 9, 30, tzinfo=got.date.tzinfo)
    assert str(got.date.tzinfo) == "Asia/Shanghai"
    assert got.url == "https://www.nature.com/articles/x"
    assert got.authors == ("Trieu Trinh", "Thang Luong")
    assert (got.venue, got.year, got.code) == ("Nature", 2024, "无")
    assert got.tags == ("math", "reasoning")
    assert got.summary == "Two lines."
    assert (got.edition, got.section, got.draft, got.slug) == (3, "Papers", True, "alphageometry")
    assert got.extra == {"reviewer": {"name": "Li", "score": 4.5, "ok": False}}
    assert got.lines == {
        "title": 2,
        "date": 3,
        "url": 4,
        "authors": 5,
        "venue": 6,
        "year": 7,
        "code": 8,
        "tags": 9,
        "summary": 10,
        "edition": 13,
        "section": 14,
        "draft": 15,
        "slug": 16,
        "reviewer": 17,
    }
    assert got.path == "issues/a.md"
    assert got.body_html == "<p>Body text.</p>"


def test_yaml_1_1_traps_stay_strings(tmp_path: Path) -> None:
    got = load_one(
        tmp_path,
        issue(
            "title: no\ndate: 2024-04-15\ntags: [on, off, yes, n, 2024, 1.10, 1:20]\n"
            "venue: 2024-01-01\nsection: 1:20\nauthors: Y\nextra_when: 2024-01-01\n"
            "extra_flag: off\nextra_sex: 1:20\nextra_oct: 017\n"
        ),
    )
    assert got.title == "no"
    assert got.tags == ("on", "off", "yes", "n", "2024", "1.10", "1:20")
    assert (got.venue, got.section, got.authors) == ("2024-01-01", "1:20", ("Y",))
    assert got.extra == {
        "extra_when": "2024-01-01",
        "extra_flag": "off",
        "extra_sex": "1:20",
        "extra_oct": "017",
    }


def test_string_keys_keep_the_source_text_of_numbers(tmp_path: Path) -> None:
    got = load_one(tmp_path, issue("title: 1.10\ndate: 2024-04-15\nvenue: 2024-01-01\n"))
    assert got.title == "1.10"
    got = load_one(tmp_path, issue("title: 2024-01-01\ndate: 2024-04-15\n"))
    assert got.title == "2024-01-01"


def test_an_author_string_is_one_author(tmp_path: Path) -> None:
    got = load_one(tmp_path, issue(GOOD + "authors: Trieu H. Trinh, Yuhuai Wu & Thang Luong\n"))
    assert got.authors == ("Trieu H. Trinh, Yuhuai Wu & Thang Luong",)
    got = load_one(tmp_path, issue(GOOD + "tags: reasoning\n"))
    assert got.tags == ("reasoning",)


def test_dates_are_aware_in_the_newsletter_zone(tmp_path: Path) -> None:
    shanghai = timezone(timedelta(hours=8))
    cases = {
        "2024-04-15": datetime(2024, 4, 15, 0, 0, tzinfo=shanghai),
        "2024-04-15 09:30": datetime(2024, 4, 15, 9, 30, tzinfo=shanghai),
        "2024-04-15T01:30:00Z": datetime(2024, 4, 15, 9, 30, tzinfo=shanghai),
        "'2024-04-14T20:30:00-05:00'": datetime(2024, 4, 15, 9, 30, tzinfo=shanghai),
        "2024-04-15 02:30:00.5 +01:00": datetime(2024, 4, 15, 9, 30, 0, 500000, tzinfo=shanghai),
    }
    for text, want in cases.items():
        got = load_one(tmp_path, issue(f"title: T\ndate: {text}\n"))
        assert got.date == want, text
        assert str(got.date.tzinfo) == "Asia/Shanghai"


def test_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    raw = "\ufeff---\r\ntitle: Windows\r\ndate: 2024-04-15\r\n---\r\nHello\r\n"
    got = load_one(tmp_path, raw.encode("utf-8"))
    assert got.title == "Windows"
    assert got.body_html == "<p>Hello</p>"
    assert got.lines == {"title": 2, "date": 3}


def test_missing_and_broken_fences(tmp_path: Path) -> None:
    assert problems(tmp_path, {"issues/a.md": "title: x\n"}) == [
        "issues/a.md:1: missing front matter: the file must start with a '---' line, "
        "then title: and date:, then '---'"
    ]
    assert problems(tmp_path, {"issues/a.md": "---\ntitle: x\ndate: 2024-01-01\n"}) == [
        "issues/a.md:1: front matter is not closed: add a '---' line after it"
    ]


def test_front_matter_must_be_a_mapping(tmp_path: Path) -> None:
    assert problems(tmp_path, {"issues/a.md": "---\n\n- a\n- b\n---\n"}) == [
        "issues/a.md:3: front matter must be a mapping of keys (title: …, date: …)"
    ]


def test_yaml_syntax_errors_point_at_the_file_line(tmp_path: Path) -> None:
    text = "---\ntitle: ok\ndate: 2024-01-01\ntags: [a, b\nvenue: x\n---\nbody\n"
    [message] = problems(tmp_path, {"issues/a.md": text})
    assert message.startswith("issues/a.md:5: invalid YAML: ")
    assert "started on line 4" in message
    [message] = problems(tmp_path, {"issues/a.md": "---\ntitle: a\n  b: c\n---\n"})
    assert message.startswith("issues/a.md:3: invalid YAML: mapping values are not allowed")


def test_missing_title_points_at_the_front_matter_start(tmp_path: Path) -> None:
    assert problems(tmp_path, {"issues/a.md": issue("date: 2024-01-01\n")}) == [
        "issues/a.md:1: title: is required"
    ]
    assert problems(tmp_path, {"issues/a.md": issue("titel: X\ndate: 2024-01-01\n")}) == [
        "issues/a.md:1: title: is required (found 'titel': a typo?)"
    ]
    assert problems(tmp_path, {"issues/a.md": issue("title:\n")}) == [
        "issues/a.md:1: date: is required",
        "issues/a.md:2: title: must not be empty",
    ]


def test_bad_dates_point_at_the_date_line(tmp_path: Path) -> None:
    assert problems(tmp_path, {"issues/a.md": issue("title: T\n\ndate: 2024-02-30\n")}) == [
        "issues/a.md:4: date: invalid date '2024-02-30' (day is out of range for month)"
    ]
    assert problems(tmp_path, {"issues/a.md": issue("title: T\ndate: yesterday\n")}) == [
        "issues/a.md:3: date: expected YYYY-MM-DD or an ISO 8601 date-time such as "
        "2024-05-01T09:30:00+08:00, not 'yesterday'"
    ]


def test_wrong_types_are_reported_on_their_lines(tmp_path: Path) -> None:
    text = issue(
        GOOD + 'draft: "maybe"\nedition: -1\nyear: abc\ndraft2: 1\n'
        "tags: [ok, [nested]]\nurl: javascript:alert(1)\nslug: Not A Slug\n"
        "image: 'javascript:alert(1)'\nauthors: {a: 1}\ncode: 'javascript:x'\n"
    )
    assert problems(tmp_path, {"issues/a.md": text}) == [
        "issues/a.md:4: draft: must be true or false, not 'maybe'",
        "issues/a.md:5: edition: must be a whole number ≥ 1, not '-1'",
        "issues/a.md:6: year: must be a whole number ≥ 1 and ≤ 9999, not 'abc'",
        "issues/a.md:8: tags: every entry must be a string",
        "issues/a.md:9: url: must be an absolute http(s) URL, not 'javascript:alert(1)'",
        "issues/a.md:10: slug: use lowercase ASCII letters, digits and single hyphens, "
        "not 'Not A Slug'",
        "issues/a.md:11: image: must be a relative path or an http(s) URL, "
        "not 'javascript:alert(1)'",
        "issues/a.md:12: authors: every entry must be a string",
        "issues/a.md:13: code: not a safe link: 'javascript:x'",
    ]


def test_unparsable_urls_are_problems_not_crashes(tmp_path: Path) -> None:
    text = issue(GOOD + "url: 'http://[oops'\ncode: 'http://[x'\nimage: 'http://[y'\n")
    assert problems(tmp_path, {"issues/a.md": text}) == [
        "issues/a.md:4: url: must be an absolute http(s) URL, not 'http://[oops'",
        "issues/a.md:5: code: not a safe link: 'http://[x'",
        "issues/a.md:6: image: must be a relative path or an http(s) URL, not 'http://[y'",
    ]
    got = load_one(tmp_path, issue(GOOD + "url: HTTPS://Example.org/x\ncode: 'TBD: soon'\n"))
    assert (got.url, got.code) == ("HTTPS://Example.org/x", "TBD: soon")


def test_yes_is_not_a_boolean(tmp_path: Path) -> None:
    assert problems(tmp_path, {"issues/a.md": issue(GOOD + "draft: yes\n")}) == [
        "issues/a.md:4: draft: must be true or false, not 'yes'"
    ]


def test_line_breaks_in_titles_are_refused(tmp_path: Path) -> None:
    text = issue(
        'title: "Hello\\r\\nBcc: victim@example.com"\ndate: 2024-01-01\n'
        "section: |\n  a\n  b\nsummary: |\n  fine\n  on two lines\n"
    )
    assert problems(tmp_path, {"issues/a.md": text}) == [
        "issues/a.md:2: title: must be a single line (no line breaks or control characters)",
        "issues/a.md:4: section: must be a single line (no line breaks or control characters)",
    ]
    got = load_one(
        tmp_path,
        issue("title: |\n  One line\ndate: 2024-01-01\nsummary: |\n  fine\n  on two lines\n"),
    )
    assert (got.title, got.summary) == ("One line", "fine\non two lines")


def test_duplicate_keys_point_at_the_duplicate(tmp_path: Path) -> None:
    text = issue("title: One\ndate: 2024-01-01\ntitle: Two\n")
    assert problems(tmp_path, {"issues/a.md": text}) == [
        "issues/a.md:4: duplicate key 'title' (first set on line 2)"
    ]


def test_non_utf8_files_name_the_line(tmp_path: Path) -> None:
    raw = "---\ntitle: ok\ndate: 2024-01-01\n---\ncafé\n".encode("latin-1")
    assert problems(tmp_path, {"issues/a.md": raw}) == [
        "issues/a.md:5: not valid UTF-8 (byte 38); save the file as UTF-8"
    ]


def test_bad_explicit_tags_and_control_characters(tmp_path: Path) -> None:
    text = issue(GOOD + "weird: !!int abc\nother: !custom x\n")
    found = problems(tmp_path, {"issues/a.md": text})
    assert [m.split(": cannot be read")[0] for m in found] == [
        "issues/a.md:4: weird",
        "issues/a.md:5: other",
    ]
    [message] = problems(tmp_path, {"issues/a.md": issue(GOOD + "venue: a\x01b\n")})
    assert message == "issues/a.md:4: invalid YAML: character U+0001 is not allowed here"


def test_deep_nesting_is_refused_instead_of_crashing(tmp_path: Path) -> None:
    # 100,000 nested "[" overflow libyaml's recursive composer (a segfault, not an exception).
    text = issue(GOOD + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert problems(tmp_path, {"issues/a.md": text}) == [
        "issues/a.md:2: front matter nests more than 100 levels deep"
    ]
    got = load_one(tmp_path, issue(GOOD + "deep: " + "[" * 50 + "]" * 50 + "\n"))
    assert str(got.extra["deep"]).startswith("[[[[")


def test_explicit_tags_with_empty_values_are_located_errors(tmp_path: Path) -> None:
    # Found by hypothesis: PyYAML's int constructor raised IndexError on "!!int" with no value.
    found = problems(tmp_path, {"issues/a.md": "---\ntitle: !!int\ndate: 2024-04-15\n---\n"})
    assert found and found[0].startswith("issues/a.md:2: title")
