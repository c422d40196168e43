"""Fuzzing config.toml and CLI arguments: located errors and exit codes, never a traceback."""

from __future__ import annotations

import json
import math
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import example, given, settings
from hypothesis import strategies as st

import newsletter.cli
from newsletter.errors import NewsletterError
from tests.conftest import BASE_CONFIG, issue
from tests.reliability import FUZZ, assert_no_crash, located_lines, run

# --- config.toml ----------------------------------------------------------------------------

TOML_BITS = st.sampled_from(
    [
        "[newsletter]",
        "[editions]",
        "[email]",
        "[sender]",
        "[sender.smtp]",
        "[state]",
        "[build]",
        "[schedule]",
        "[[x]]",
        "[",
        "]",
        "title",
        "base_url",
        "timezone",
        "language",
        "kind",
        "group_by",
        "rate",
        "cron",
        " = ",
        "=",
        '"',
        "'",
        '"""',
        "'''",
        "\\",
        "\\u00",
        "\n",
        "\r\n",
        "#",
        ".",
        ",",
        "{",
        "}",
        "1",
        "-1",
        "1e999",
        "nan",
        "inf",
        "true",
        "1979-05-27",
        "07:32:00",
        "1979-05-27T07:32:00Z",
        '"https://x.org/"',
        '"UTC"',
        '"week"',
        "\x00",
        "\ufeff",
        "中",
        " ",
        "\t",
    ]
)


@pytest.fixture
def config_site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "issues").mkdir(parents=True)
    (root / "issues" / "a.md").write_text(issue("A", "2024-04-09", url="https://x.org/a"), "utf-8")
    return root


def _config_result(root: Path, text: str) -> Result:
    (root / "config.toml").write_bytes(text.encode("utf-8", "surrogatepass"))
    result = run(root, "check")
    assert_no_crash(result)
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 0:
        assert result.stdout.startswith("ok: "), result.output
    return result


def _config_problems(result: Result, text: str, *, need_lines: bool) -> None:
    lines = text.splitlines()
    problems = [m for m in located_lines(result.stderr) if m["path"] == "config.toml"]
    if "config.toml" not in result.stderr:
        return  # the config was fine; check found problems elsewhere
    assert problems, result.stderr
    for m in problems:
        if m["line"] is None:
            assert not need_lines, m.group(0)
            continue
        assert 1 <= int(m["line"]) <= max(len(lines), 1) + 1, m.group(0)
        section_key = re.match(r"\[([^\]]+)\] ([\w-]+):", m["message"])
        if need_lines and section_key:  # the line shown is the key's own line
            assert lines[int(m["line"]) - 1].strip().startswith(section_key[2]), m.group(0)


@pytest.mark.slow
@settings(FUZZ, max_examples=150)
@given(text=st.lists(TOML_BITS | st.text(max_size=8), max_size=60).map("".join))
@example(text="[").via("a TOML error at the end of the document had no line")
def test_any_config_text_is_ok_or_a_located_config_error(config_site: Path, text: str) -> None:
    result = _config_result(config_site, BASE_CONFIG + text)
    if result.exit_code == 1:
        _config_problems(result, BASE_CONFIG + text, need_lines=False)
        if "invalid TOML" in result.stderr:
            assert re.search(r"^config\.toml:\d+: invalid TOML: ", result.stderr, re.M)


# Every key config.py knows, with its section.
SCHEMA = {
    "newsletter": ["title", "base_url", "description", "language", "timezone", "author", "email"],
    "editions": [
        "group_by",
        "title",
        "subject",
        "preheader",
        "section_by",
        "section_order",
        "week_start",
        "notes_dir",
        "lock_file",
    ],
    "email": ["from", "reply_to", "list_id", "unsubscribe_url", "unsubscribe_mailto", "secret_env"],
    "build": ["out", "feed_limit", "issues_dir", "templates_dir"],
    "state": ["dir", "database"],
    "sender": [
        "kind",
        "rate",
        "hourly_cap",
        "daily_cap",
        "concurrency",
        "batch_size",
        "max_attempts",
        "max_consecutive_errors",
    ],
    "schedule": ["cron", "misfire_grace"],
    "publish": ["command"],
}
BASE = {
    "newsletter": {
        "title": "T",
        "base_url": "https://digest.example.org/",
        "timezone": "Asia/Shanghai",
        "email": "digest@example.org",
    },
    "editions": {"title": "T #{number}"},
    "email": {"from": "T <digest@example.org>"},
}
PATTERN_BITS = st.sampled_from(
    [
        "{number}",
        "{title}",
        "{start:%Y-%m-%d}",
        "{number[0]}",
        "{0}",
        "{}",
        "{nope}",
        "{number.real}",
        "{start:%n}",
        "{{",
        "}}",
        "{",
        "}",
        "{title!r}",
        "{number:>5}",
        "{count:d}",
        "%",
        "{week:02d}",
        "{newsletter}",
        " ",
        "x",
    ]
)
patterns = st.lists(PATTERN_BITS, max_size=5).map("".join)
scalars = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            "week",
            "month",
            "UTC",
            "America",
            "zh-CN",
            "en_US",
            "14/s",
            "0/s",
            "30m",
            "1d",
            "smtp",
            "none",
            "* * * * *",
            "61 * * * *",
            "https://x.org",
            "ftp://x",
            "x\r\ny",
            "a" * 300,
        ]
    ),
    patterns,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# Keys naming files and folders get names that stay inside the project: "/" or ".." would let
# `check` walk or write anywhere on this machine (an absolute [state] dir is legitimate).
PATH_KEYS = {
    ("state", "dir"),
    ("state", "database"),
    ("build", "out"),
    ("build", "issues_dir"),
    ("build", "templates_dir"),
    ("editions", "notes_dir"),
    ("editions", "lock_file"),
}
# Values aimed at each key's own parser (time zones, locales, patterns, crons, rates …).
TAILORED: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("newsletter", "timezone"): st.sampled_from(
        [
            "UTC",
            "America",
            "Asia",
            "a" * 300,
            "../x",
            "Etc/GMT+1",
            "zone.tab",
            "posixrules",
            "",
            "Asia/Shanghai\n",
            "UTC/",
        ]
    ),
    ("newsletter", "language"): st.sampled_from(
        ["en", "zh-CN", "zh_CN", "", "-", "x" * 50, "und", "root", "C", "en--US", "i-klingon"]
    ),
    ("newsletter", "base_url"): st.sampled_from(
        ["https://x.org/", "x.org", "http://[", "", "https://x.org/\r\nX: y", "javascript:x"]
    ),
    ("editions", "title"): patterns,
    ("editions", "subject"): patterns,
    ("editions", "preheader"): patterns,
    ("schedule", "cron"): st.sampled_from(
        [
            "0 8 * * 1",
            "* * * * * *",
            "61 * * * *",
            "@daily",
            "0 8 * * mon-fri",
            "*/0 * * * *",
            "",
            "x",
        ]
    ),
    ("schedule", "misfire_grace"): st.sampled_from(["30m", "1e9h", "-1s", "", "10"]),
    ("sender", "rate"): st.sampled_from(["14/s", "0/s", "1e3/s", "3000/h", "/s", "14"]),
    ("sender", "kind"): st.sampled_from(["outbox", "smtp", "nosuch", "memory", ""]),
    ("email", "from"): st.sampled_from(["A <a@x.org>", "a\r\nBcc: b@x.org", "", "<>", "@"]),
}
path_values = st.one_of(
    st.text(st.characters(blacklist_characters="/\\.", blacklist_categories=["Cs"]), max_size=12),
    st.integers(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)


def _string(value: str) -> str:
    """A TOML basic string: JSON's escapes, plus DEL, which TOML also wants escaped."""
    return json.dumps(value).replace("\x7f", "\\u007f")


def _toml(value: Any) -> str:
    """A TOML literal for ``value`` (tomllib has no writer)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    text: str = value.isoformat()  # a time of day
    return text


def _document(tables: dict[str, dict[str, Any]]) -> str:
    out = []
    for section, keys in tables.items():
        out.append(f"[{section}]")
        out += [f"{k} = {_toml(v)}" for k, v in keys.items()]
        out.append("")
    return "\n".join(out)


@st.composite
def config_tables(draw: st.DrawFn) -> dict[str, dict[str, Any]]:
    tables: dict[str, dict[str, Any]] = {section: dict(keys) for section, keys in BASE.items()}
    for _ in range(draw(st.integers(1, 6))):
        section = draw(st.sampled_from(sorted(SCHEMA)))
        key = draw(st.sampled_from([*SCHEMA[section], "unknwn"]))
        strategy: st.SearchStrategy[Any] = path_values if (section, key) in PATH_KEYS else values
        if (section, key) in TAILORED and draw(st.booleans()):
            strategy = TAILORED[section, key]
        tables.setdefault(section, {})[key] = draw(strategy)
    return tables


@pytest.mark.slow
@settings(FUZZ, max_examples=150)
@given(tables=config_tables())
@example(tables={**BASE, "newsletter": {**BASE["newsletter"], "timezone": "America"}}).via(
    "a folder of the zoneinfo tree was an IsADirectoryError"
)
@example(tables={**BASE, "editions": {"title": "{number[0]}"}}).via(
    "indexing a number in a pattern was a TypeError"
)
@example(tables={**BASE, "editions": {"subject": "{number:999999999999}"}}).via(
    "an enormous width in a pattern was a MemoryError"
)
def test_any_value_for_a_known_key_is_ok_or_located_at_its_line(
    config_site: Path, tables: dict[str, Any]
) -> None:
    text = _document(tables)
    result = _config_result(config_site, text)
    if result.exit_code == 1:
        _config_problems(result, text, need_lines=True)


# --- command-line arguments -----------------------------------------------------------------

COMMANDS = [
    ["build"],
    ["check"],
    ["editions"],
    ["new"],
    ["init"],
    ["send"],
    ["status"],
    ["subscribers", "add"],
    ["subscribers", "import"],
    ["subscribers", "export"],
    ["subscribers", "list"],
    ["subscribers", "remove"],
    ["subscribers", "count"],
]
ARG_BITS = st.sampled_from(
    [
        "--out",
        "--drafts",
        "--strict",
        "--json",
        "--url",
        "--tag",
        "--title",
        "--to",
        "--dry-run",
        "--yes",
        "-y",
        "--sender",
        "--retry-failed",
        "--name",
        "--status",
        "-h",
        "--help",
        "-C",
        "--nope",
        "-",
        "--",
        "1",
        "0",
        "-1",
        "2",
        "99999999999999999999999",
        "1.5",
        "abc",
        "a@example.org",
        "reader0@example.org",
        "ADA@EXAMPLE.ORG",
        "not an address",
        "readers.csv",
        "missing.csv",
        "outdir",
        "newproject",
        ".",
        "memory",
        "outbox",
        "smtp",
        "postmark",
        "nosuch",
        "active",
        "bounced",
        "https://x.org/p",
        "javascript:alert(1)",
        "x\ny",
        "中文",
        "a,b",
        "",
        " ",
        "\x01",
        "sub/dir",
        "config.toml",
        "issues",
    ]
)
# Generated text never contains a path separator or is only dots: `init`, `--out` and `new`
# must stay in the temporary directory the runner works in. Nor NUL: a real argv cannot hold
# one (C strings), and click's own path checks raise ValueError on it in-process.
arg_text = st.text(
    st.characters(blacklist_characters="/\\\x00", blacklist_categories=["Cs"]), max_size=12
).filter(lambda t: t.strip(".") != "")
NUMBERS = st.one_of(
    st.sampled_from(
        [
            "1",
            "2",
            "0",
            "-1",
            "99999999999999999999999",
            "2147483648",
            "9223372036854775808",
            "1.5",
            "abc",
            "",
        ]
    ),
    st.integers().map(str),
)
# What the first argument of each command usually is, so examples get past the parser.
POSITIONAL: dict[str, st.SearchStrategy[str]] = {
    "send": NUMBERS,
    "status": NUMBERS,
    "new": st.one_of(arg_text, ARG_BITS),
    "init": arg_text,
    "subscribers add": st.one_of(ARG_BITS, arg_text.map(lambda t: t + "@x.org")),
    "subscribers remove": ARG_BITS,
    "subscribers import": st.sampled_from(["readers.csv", "missing.csv", "config.toml", "."]),
}


@st.composite
def argv(draw: st.DrawFn, command: str) -> list[str]:
    args = draw(st.lists(ARG_BITS | arg_text | NUMBERS, max_size=4))
    if command in POSITIONAL and draw(st.integers(0, 3)):
        args.insert(0, draw(POSITIONAL[command]))
    return args


@pytest.fixture
def cli_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project in site/; commands run from work/, which holds readers.csv (and gets `init`)."""
    root = tmp_path / "site"
    (root / "issues").mkdir(parents=True)
    (root / "config.toml").write_text(BASE_CONFIG, "utf-8")
    (root / "issues" / "a.md").write_text(issue("A", "2024-04-09", url="https://x.org/a"), "utf-8")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "readers.csv").write_text(
        "email,name,tags\nreader0@example.org,R0,a\nreader1@example.org,R1,\nbad,,\n", "utf-8"
    )
    monkeypatch.chdir(tmp_path / "work")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS])
@settings(FUZZ, max_examples=15)
@given(data=st.data())
@example(data=None).via("status 99999999999999999999999 was an OverflowError from SQLite")
def test_any_arguments_are_exit_0_1_or_2_never_a_traceback(
    cli_site: Path, monkeypatch: pytest.MonkeyPatch, command: str, data: st.DataObject | None
) -> None:
    args = data.draw(argv(command)) if data is not None else ["99999999999999999999999"]
    failures: list[NewsletterError] = []
    original = newsletter.cli._fail

    def fail(exc: NewsletterError) -> None:
        failures.append(exc)
        original(exc)

    monkeypatch.setattr(newsletter.cli, "_fail", fail)
    result = run(cli_site, *command.split(), *args)
    assert_no_crash(result)
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        assert "Error: " in result.stderr, result.output  # click's usage error
        assert not failures
    elif failures:  # a NewsletterError: its lines on stderr, its exit code (1)
        assert result.exit_code == failures[0].exit_code == 1
        assert result.stderr.endswith("\n".join(failures[0].lines()) + "\n"), result.stderr
    elif result.exit_code == 1:  # check / import print their findings, then exit 1
        assert command in ("check", "subscribers import"), result.output
        located_lines(result.stderr)


@pytest.mark.parametrize(
    "title",
    [
        "Plain Digest",
        "Comma, Inc",
        'Say "hi"',
        "Tab\there",
        "Ünïcode 周报",
        "Back\\slash",
        "Curly {braces}",
        "Line\nbreak",
        "<Angle> & @t",
    ],
)
def test_init_refuses_a_title_or_writes_a_project_that_checks(tmp_path: Path, title: str) -> None:
    made = run(tmp_path, "init", str(tmp_path / "new"), "--title", title)
    assert_no_crash(made)
    if made.exit_code == 1:
        return  # refused, with a message: fine
    assert made.exit_code == 0, made.output
    checked = run(tmp_path / "new", "check")
    assert checked.exit_code == 0, checked.stderr
