"""Fuzzing issue files and edition notes: a located error or a clean build, never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import Result
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from tests.conftest import BASE_CONFIG, issue
from tests.reliability import FUZZ, assert_no_crash, located_lines, run, snapshot

# --- issue files and edition notes ----------------------------------------------------------

KEYS = [
    "title",
    "date",
    "url",
    "authors",
    "venue",
    "year",
    "code",
    "tags",
    "image",
    "summary",
    "edition",
    "section",
    "draft",
    "slug",
    "extra",
    "Title",
    "date ",
]
YAML_BITS = st.sampled_from(
    [
        ": ",
        ":",
        "- ",
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
        "!!binary",
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
        "2024-04-10",
        "2024-04-10T25:00",
        "1:20",
        "1.10",
        "-1",
        "0",
        "99999999999",
        "\\",
        "\\n",
        "---",
        "...",
        "中文",
        "\ufeff",
        "\r\n",
        "\r",
        "\x85",
        "\u2028",
        "\x00",
        "\x7f",
        "http://[",
        "javascript:alert(1)",
        "data:text/html,x",
        "https://x.org/a",
        "/abs",
        "../up",
        "figures/f.png",
        "<script>",
        "{{ x }}",
        "*|UNSUB|*",
    ]
)
MD_BITS = st.sampled_from(
    [
        "# h",
        "\n",
        "\n\n",
        "**b**",
        "_i_",
        "`c`",
        "```py\n",
        "```",
        "> q",
        "- li",
        "1. li",
        "| a | b |\n|---|---|\n| 1 | 2 |",
        "[^1]",
        "[^1]: note",
        "[l](https://x.org)",
        "[r](rel)",
        "[a](#anchor)",
        "![i](img.png)",
        "![](http://localhost/x.png)",
        "<b>",
        "</b>",
        "<div>",
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "&#xFFFE;",
        "&#0;",
        "&amp;",
        "&nbsp;",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "\x00",
        "\x0b",
        "\ufffe",
        "中文",
        "\t",
        "- [ ] task",
        "- [x] done",
        "~~s~~",
        "https://auto.link",
        "{{ unsubscribe_url }}",
        "<mj-text>",
        "<br>",
        "<hr>",
        "[x](https://digest.example.org/editions/9/)",
        "[x]: https://x.org",
    ]
)
text_or_bits = st.one_of(st.text(max_size=30), st.lists(YAML_BITS, max_size=8).map("".join))


def yq(value: str) -> str:
    """``value`` as a YAML double-quoted scalar (control characters escaped, so YAML reads it)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return (
        '"'
        + re.sub(
            "[\x00-\x1f\x7f-\x9f\ufeff]",
            lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else "\\ufeff",
            escaped,
        )
        + '"'
    )


PLAUSIBLE = {
    "url": st.sampled_from(
        [
            "https://arxiv.org/abs/1",
            "http://x.org/a?b=1&c=2#f",
            "javascript:alert(1)",
            "https://x.org/<script>",
        ]
    ),
    "code": st.sampled_from(
        [
            "https://github.com/x/y",
            "data:text/html,x",
            "github.com/x",
            "JaVaScRiPt:alert(1)",
            "git@github.com:x/y.git",
        ]
    ),
    "image": st.sampled_from(
        [
            "fig.png",
            "/static/a.svg",
            "https://x.org/i.png",
            "data:image/png;base64,AAAA",
            "../../../etc/passwd",
            "#frag",
        ]
    ),
    "tags": st.lists(st.text(min_size=1, max_size=8).map(yq), max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"
    ),
    "authors": st.lists(st.text(min_size=1, max_size=8).map(yq), max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"
    ),
    "summary": st.text(min_size=1, max_size=40).map(yq),
    "draft": st.sampled_from(["true", "false", "yes"]),
    "year": st.integers(-5, 10_000).map(str),
    "section": st.text(min_size=1, max_size=10).map(yq),
    "venue": st.text(min_size=1, max_size=10).map(yq),
    "edition": st.integers(-1, 3).map(str),
    "extra": text_or_bits.map(yq),
}


@st.composite
def front_matter(draw: st.DrawFn) -> str:
    """Valid title and date with plausible or hostile fields (most examples reach rendering),
    or YAML-ish noise with random keys."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.lists(YAML_BITS | st.text(max_size=10), max_size=40).map("".join))
    if kind >= 2:
        lines = [f"title: {yq(draw(st.text(min_size=1, max_size=30)))}", "date: 2024-04-10"]
        for key in draw(st.lists(st.sampled_from(sorted(PLAUSIBLE)), max_size=4, unique=True)):
            lines.append(f"{key}: {draw(PLAUSIBLE[key])}")
        return "\n".join(lines)
    lines = ['title: "Fuzzed paper"', "date: 2024-04-10"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(KEYS))
        value = draw(text_or_bits)
        if draw(st.booleans()):
            value = yq(value)  # a quoted scalar can hold anything
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


@st.composite
def issue_file(draw: st.DrawFn) -> bytes:
    body = draw(st.lists(MD_BITS | st.text(max_size=20), max_size=30).map("".join))
    text = f"---\n{draw(front_matter())}\n---\n{body}"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    data = text.encode("utf-8", "surrogatepass")
    mangle = draw(st.sampled_from(["none"] * 6 + ["bom", "latin1", "bytes", "truncate"]))
    if mangle == "bom":
        data = b"\xef\xbb\xbf" + data
    elif mangle == "latin1":
        data = text.encode("latin-1", "replace")
    elif mangle == "bytes":
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    elif mangle == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    return data


@st.composite
def note_file(draw: st.DrawFn) -> bytes | None:
    if draw(st.integers(0, 2)):
        return None
    lines = [
        f"{draw(st.sampled_from(['subject', 'preheader', 'title', 'subjct']))}: "
        f"{yq(draw(text_or_bits))}"
        for _ in range(draw(st.integers(0, 3)))
    ]
    body = draw(st.lists(MD_BITS, max_size=10).map("".join))
    return f"---\n{chr(10).join(lines)}\n---\n{body}".encode("utf-8", "surrogatepass")


@pytest.fixture
def fuzz_site(tmp_path: Path) -> Path:
    """A project with one good issue; the fuzzed file sits next to it (same week, 2024-W15)."""
    root = tmp_path / "site"
    (root / "issues").mkdir(parents=True)
    (root / "config.toml").write_text(BASE_CONFIG, "utf-8")
    (root / "issues" / "good.md").write_text(
        issue("Good paper", "2024-04-09", "Fine.", url="https://arxiv.org/abs/1"), "utf-8"
    )
    return root


def _put(root: Path, rel: str, data: bytes | None) -> None:
    path = root / rel
    if data is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _assert_located(result: Result, files: dict[str, bytes | None]) -> None:
    """Exit 1 with only located problems; those in fuzzed files point at a line they have."""
    assert result.exit_code == 1, result.output
    for m in located_lines(result.stderr):
        path, line = m["path"], m["line"]
        data = files.get(path)
        if data is not None and line is not None:  # a lone CR ends a line in Markdown too
            lines = max(data.count(b"\n"), len(data.splitlines())) + 1
            assert 1 <= int(line) <= lines, (m.group(0), data)
        else:
            assert path == "config.toml" or path.startswith(
                ("issues/", "editions/", "newsletter/templates/")
            ), m.group(0)


def _check_issue(root: Path, data: bytes, note: bytes | None) -> Result:
    files = {"issues/fuzz.md": data, "editions/2024-W15.md": note}
    for rel, content in files.items():
        _put(root, rel, content)
    result = run(root, "check")
    assert_no_crash(result)
    event(
        "ok"
        if result.exit_code == 0
        else "lint findings"
        if "error(s)" in result.stderr
        else "load error"
    )
    if result.exit_code == 0:
        assert result.stdout.startswith("ok: "), result.output
    else:
        _assert_located(result, files)
    return result


@pytest.mark.slow
@settings(FUZZ, max_examples=120)
@given(data=issue_file(), note=note_file())
@example(data=b'---\ntitle: "T"\ndate: 2024-04-10\n---\n\x1e\xc2\x85[r](rel)', note=None).via(
    "link findings were placed by str.splitlines(), which also breaks at \\x1e and U+0085"
)
def test_check_never_crashes_on_any_issue_file(
    fuzz_site: Path, data: bytes, note: bytes | None
) -> None:
    _check_issue(fuzz_site, data, note)


@pytest.mark.slow
@settings(FUZZ, max_examples=50)
@given(data=issue_file(), note=note_file())
def test_build_fails_cleanly_and_keeps_the_previous_site(
    fuzz_site: Path, data: bytes, note: bytes | None
) -> None:
    """A build either succeeds or is a located error that leaves public/ exactly as it was;
    `check` (load + group + render + lint) fails whenever build does."""
    _put(fuzz_site, "issues/fuzz.md", None)
    _put(fuzz_site, "editions/2024-W15.md", None)
    first = run(fuzz_site, "build")
    assert first.exit_code == 0, first.output
    before = snapshot(fuzz_site / "public")
    checked = _check_issue(fuzz_site, data, note)
    result = run(fuzz_site, "build")
    assert_no_crash(result)
    if result.exit_code == 0:
        assert "editions" in result.stdout
        return
    _assert_located(result, {"issues/fuzz.md": data, "editions/2024-W15.md": note})
    assert snapshot(fuzz_site / "public") == before
    assert checked.exit_code == 1, "build failed but check passed"
