"""Property tests: no input file makes loading fail with anything but a located ContentError."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import Config
from newsletter.content import load_issues, load_notes
from newsletter.errors import ContentError
from tests.content import make_project

# Pieces of YAML and Markdown syntax, so examples reach the parser's corners, not just "abc".
YAML_BITS = st.sampled_from(
    [
        "title",
        "date",
        "tags",
        "draft",
        "edition",
        "year",
        "slug",
        "image",
        "url",
        "authors",
        ": ",
        ":",
        "-",
        " ",
        "\n",
        "\t",
        "[",
        "]",
        "{",
        "}",
        ",",
        "'",
        '"',
        "|",
        ">",
        "&a",
        "*a",
        "!!int",
        "!!str",
        "!x",
        "#",
        "%",
        "@",
        "`",
        "?",
        "~",
        "null",
        "true",
        "no",
        "2024-02-30",
        "2024-01-01",
        "1:20",
        "1.10",
        "-1",
        "0x1F",
        "\\",
        "\\n",
        "---",
        "...",
        "中",
        "\ufeff",
        "\r\n",
        "\x85",
        "\u2028",
        "http://[",
        "javascript:",
    ]
)
yaml_text = st.one_of(st.text(), st.lists(YAML_BITS, max_size=40).map("".join))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Config:
    return make_project(tmp_path_factory.mktemp("fuzz"), {})


def check(config: Config, data: bytes, name: str = "issues/a.md") -> None:
    path = config.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        loaded = load_issues(config) if name.startswith("issues/") else load_notes(config)
    except ContentError as exc:
        assert exc.problems, exc.message
        for problem in exc.problems:
            assert problem.path == name
            assert isinstance(problem.line, int) and problem.line >= 1, problem
            assert problem.line <= data.count(b"\n") + 2, problem
        return
    finally:
        path.unlink()
    for item in loaded if isinstance(loaded, list) else loaded.values():
        html = item.body_html if hasattr(item, "body_html") else item.intro_html
        ET.fromstring(f"<root>{html}</root>")


@settings(max_examples=400, deadline=None)
@given(front=yaml_text, body=st.text())
def test_any_front_matter_and_body(project: Config, front: str, body: str) -> None:
    check(project, f"---\n{front}\n---\n{body}".encode())


@settings(max_examples=200, deadline=None)
@given(front=yaml_text)
def test_plausible_issues_with_noise(project: Config, front: str) -> None:
    text = f"---\ntitle: T\ndate: 2024-01-01\n{front}\n---\nbody\n"
    check(project, text.encode())


@settings(max_examples=200, deadline=None)
@given(data=st.binary())
def test_any_bytes(project: Config, data: bytes) -> None:
    check(project, data)
    check(project, b"---\n" + data)


@settings(max_examples=200, deadline=None)
@given(front=yaml_text, body=st.text())
def test_any_edition_note(project: Config, front: str, body: str) -> None:
    check(project, f"---\n{front}\n---\n{body}".encode(), name="editions/2024-W01.md")
    check(project, body.encode(), name="editions/7.md")


def test_the_fixture_project_is_empty(project: Config) -> None:
    assert load_issues(project) == [] and not list(Path(project.root).rglob("*.md"))
