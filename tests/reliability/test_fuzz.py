"""Property-based fuzzing of every input: issue files, CSV imports, config.toml and CLI arguments.

Each property drives the real command line (click's CliRunner) on a throwaway project and
checks the contract of README "Commands": a user mistake is exit 1 with `path:line: message`
lines on stderr, a usage mistake is exit 2, and nothing ever ends in a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

import newsletter.cli
from newsletter.errors import NewsletterError
from newsletter.state.addresses import check_address, check_name, parse_tags
from tests.conftest import BASE_CONFIG, issue
from tests.reliability import assert_no_crash, located_lines, run, snapshot

# Bounded (max_examples per test below) so the folder runs in about a minute; no example
# database (nothing written into the repository); a failure prints the blob that replays it.
FUZZ = settings(deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

# --- issue files and edition notes ----------------------------------------------------------

KEYS = ["title", "date", "url", "authors", "venue", "year", "code", "tags", "image", "summary",
        "edition", "section", "draft", "slug", "extra", "Title", "date "]
YAML_BITS = st.sampled_from([
    ": ", ":", "- ", " ", "\n", "\t", "[", "]", "{", "}", ",", "'", '"', "|", ">", "&a", "*a",
    "!!int", "!!str", "!!binary", "!x", "#", "%", "@", "`", "?", "~", "null", "true", "no",
    "2024-02-30", "2024-04-10", "2024-04-10T25:00", "1:20", "1.10", "-1", "0", "99999999999",
    "\\", "\\n", "---", "...", "中文", "\ufeff", "\r\n", "\r", "\x85", "\u2028", "\x00", "\x7f",
    "http://[", "javascript:alert(1)", "data:text/html,x", "https://x.org/a", "/abs", "../up",
    "figures/f.png", "<script>", "{{ x }}", "*|UNSUB|*",
])
MD_BITS = st.sampled_from([
    "# h", "\n", "\n\n", "**b**", "_i_", "`c`", "```py\n", "```", "> q", "- li", "1. li",
    "| a | b |\n|---|---|\n| 1 | 2 |", "[^1]", "[^1]: note", "[l](https://x.org)", "[r](rel)",
    "[a](#anchor)", "![i](img.png)", "![](http://localhost/x.png)", "<b>", "</b>", "<div>",
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "&#xFFFE;", "&#0;", "&amp;",
    "&nbsp;", "<!--", "-->", "<![CDATA[", "]]>", "\x00", "\x0b", "\ufffe", "中文", "\t",
    "- [ ] task", "- [x] done", "~~s~~", "https://auto.link", "{{ unsubscribe_url }}", "<mj-text>",
    "<br>", "<hr>", "[x](https://digest.example.org/editions/9/)", "[x]: https://x.org",
])
text_or_bits = st.one_of(st.text(max_size=30), st.lists(YAML_BITS, max_size=8).map("".join))


def yq(value: str) -> str:
    """``value`` as a YAML double-quoted scalar (control characters escaped, so YAML reads it)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub("[\x00-\x1f\x7f-\x9f\ufeff]", lambda m: f"\\x{ord(m[0]):02x}"
                        if ord(m[0]) < 0x100 else "\\ufeff", escaped) + '"'


PLAUSIBLE = {
    "url": st.sampled_from(["https://arxiv.org/abs/1", "http://x.org/a?b=1&c=2#f",
                            "javascript:alert(1)", "https://x.org/<script>"]),
    "code": st.sampled_from(["https://github.com/x/y", "data:text/html,x", "github.com/x",
                             "JaVaScRiPt:alert(1)", "git@github.com:x/y.git"]),
    "image": st.sampled_from(["fig.png", "/static/a.svg", "https://x.org/i.png",
                              "data:image/png;base64,AAAA", "../../../etc/passwd", "#frag"]),
    "tags": st.lists(st.text(min_size=1, max_size=8).map(yq), max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"),
    "authors": st.lists(st.text(min_size=1, max_size=8).map(yq), max_size=3).map(
        lambda items: "[" + ", ".join(items) + "]"),
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
        lines = [f"title: {yq(draw(st.text(min_size=1, max_size=30)))}",
                 "date: 2024-04-10"]
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
        data = data[:draw(st.integers(0, len(data)))]
    return data


@st.composite
def note_file(draw: st.DrawFn) -> bytes | None:
    if draw(st.integers(0, 2)):
        return None
    lines = [f"{draw(st.sampled_from(['subject', 'preheader', 'title', 'subjct']))}: "
             f"{yq(draw(text_or_bits))}" for _ in range(draw(st.integers(0, 3)))]
    body = draw(st.lists(MD_BITS, max_size=10).map("".join))
    return f"---\n{chr(10).join(lines)}\n---\n{body}".encode("utf-8", "surrogatepass")


@pytest.fixture
def fuzz_site(tmp_path: Path) -> Path:
    """A project with one good issue; the fuzzed file sits next to it (same week, 2024-W15)."""
    root = tmp_path / "site"
    (root / "issues").mkdir(parents=True)
    (root / "config.toml").write_text(BASE_CONFIG, "utf-8")
    (root / "issues" / "good.md").write_text(
        issue("Good paper", "2024-04-09", "Fine.", url="https://arxiv.org/abs/1"), "utf-8")
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
                ("issues/", "editions/", "newsletter/templates/")), m.group(0)


def _check_issue(root: Path, data: bytes, note: bytes | None) -> Result:
    files = {"issues/fuzz.md": data, "editions/2024-W15.md": note}
    for rel, content in files.items():
        _put(root, rel, content)
    result = run(root, "check")
    assert_no_crash(result)
    event("ok" if result.exit_code == 0 else "lint findings" if "error(s)" in result.stderr
          else "load error")
    if result.exit_code == 0:
        assert result.stdout.startswith("ok: "), result.output
    else:
        _assert_located(result, files)
    return result


@pytest.mark.slow
@settings(FUZZ, max_examples=120)
@given(data=issue_file(), note=note_file())
@example(data=b'---\ntitle: "T"\ndate: 2024-04-10\n---\n\x1e\xc2\x85[r](rel)', note=None).via(
    "link findings were placed by str.splitlines(), which also breaks at \\x1e and U+0085")
def test_check_never_crashes_on_any_issue_file(fuzz_site: Path, data: bytes,
                                               note: bytes | None) -> None:
    _check_issue(fuzz_site, data, note)


@pytest.mark.slow
@settings(FUZZ, max_examples=50)
@given(data=issue_file(), note=note_file())
def test_build_fails_cleanly_and_keeps_the_previous_site(fuzz_site: Path, data: bytes,
                                                         note: bytes | None) -> None:
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


# --- CSV imports ----------------------------------------------------------------------------

GOOD = [f"reader{i}@example.org" for i in range(8)] + ["Ada.Lovelace@Example.ORG",
                                                       "δοκιμή@παράδειγμα.δοκιμή"]
BAD = ["", " ", "not-an-address", "a@", "@b.org", "a b@c.org", "a@b@c.org", "a@localhost",
       "a@-x.org", "x" * 70 + "@example.org", "a@b.org\x00", "a\r\n@b.org"]
emails = st.one_of(st.sampled_from(GOOD), st.sampled_from(GOOD).map(str.upper),
                   st.sampled_from(GOOD).map(lambda e: f"  {e} "), st.sampled_from(BAD),
                   st.text(max_size=15))
names = st.one_of(st.just(""), st.text(max_size=12), st.sampled_from(
    ["Ada", "Grace, Jr", 'Dave "the" man', "line\nbreak", "tab\there", "nul\x00", "\u2028",
     "x" * 300, "李雷", "=cmd|' /C calc'!A0"]))
tags = st.one_of(st.just(""), st.text(max_size=10), st.sampled_from(
    ["ai;ml", "a,b", " x ; y ", "t" * 70, "中文", ";;", "bad\x01tag"]))


@st.composite
def csv_rows(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(st.sampled_from([["email", "name", "tags"], ["Email", "Name"], ["email"],
                                   ["name", "email", "tags", "notes"], [" EMAIL ", "tags"]]))
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        values = {"email": draw(emails), "name": draw(names), "tags": draw(tags),
                  "notes": draw(st.text(max_size=5))}
        row = [values[h.strip().lower()] for h in header]
        if draw(st.integers(0, 9)) == 0:
            row = row[:draw(st.integers(0, len(row)))] + draw(
                st.lists(st.text(max_size=4), max_size=2))
        rows.append(row)
    return header, rows


def _expected_problem(row: list[str], header: list[str]) -> bool:
    """Whether the import must report this (well-formed CSV) row as bad: the documented rules."""
    names = [h.strip().lower() for h in header]
    if len(row) > len(names) and any(f.strip() for f in row[len(names):]):
        return True

    def field(name: str) -> str:
        i = names.index(name) if name in names else None
        return row[i] if i is not None and i < len(row) else ""

    if not field("email").strip():
        return True
    try:
        check_address(field("email"))
        check_name(field("name"))
        parse_tags(field("tags"))
    except NewsletterError:
        return True
    return False


def _summary(stdout: str) -> dict[str, int]:
    m = re.search(r": (\d+) added, (\d+) already on the list, (\d+) duplicates, (\d+) suppressed,"
                  r" (\d+) bad rows \((\d+) rows, (\d+) batches", stdout)
    assert m, stdout
    keys = ("added", "existing", "duplicates", "suppressed", "bad", "rows", "batches")
    return dict(zip(keys, map(int, m.groups()), strict=True))


@pytest.fixture
def csv_site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    (root / "config.toml").write_text(BASE_CONFIG, "utf-8")
    return root


def _fresh_state(root: Path) -> None:
    shutil.rmtree(root / ".newsletter", ignore_errors=True)


@pytest.mark.slow
@settings(FUZZ, max_examples=100)
@given(table=csv_rows(), bom=st.booleans(), dialect=st.sampled_from([
    # QUOTE_MINIMAL quotes only the characters of the line terminator: with "\n" a lone CR in
    # a field would go out unquoted and rightly end the record there.
    ("\r\n", csv.QUOTE_MINIMAL), ("\n", csv.QUOTE_ALL), ("\r\n", csv.QUOTE_ALL),
    ("\n", csv.QUOTE_NONNUMERIC)]))
def test_import_reports_exactly_the_bad_rows_by_line(csv_site: Path,
                                                    table: tuple[list[str], list[list[str]]],
                                                    bom: bool, dialect: tuple[str, Any]) -> None:
    header, rows = table
    terminator, quoting = dialect
    assume(not any(row in ([], [""]) for row in rows))  # blank records are skipped by design
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow(header)
    starts: list[int] = []
    for row in rows:
        starts.append(re.sub(r"\r\n|\r|\n", "\n", out.getvalue()).count("\n") + 1)
        writer.writerow(row)
    path = csv_site / "readers.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8"))
    _fresh_state(csv_site)
    result = run(csv_site, "subscribers", "import", str(path))
    assert_no_crash(result)

    bad_lines = {starts[i] for i, row in enumerate(rows) if _expected_problem(row, header)}
    reported = {int(m["line"]) for m in located_lines(result.stderr)
                if m["path"] == str(path) and m["line"]}
    assert reported == bad_lines, result.stderr
    assert result.exit_code == (1 if bad_lines else 0), result.output
    counts = _summary(result.stdout)
    assert counts["bad"] == len(bad_lines) and counts["rows"] == len(rows)
    assert (counts["added"] + counts["existing"] + counts["duplicates"] + counts["suppressed"]
            + counts["bad"]) == counts["rows"]
    good = {check_address(r[[h.strip().lower() for h in header].index("email")]).key
            for i, r in enumerate(rows) if starts[i] not in bad_lines}
    assert counts["added"] == len(good)
    listed = run(csv_site, "subscribers", "export")
    assert listed.exit_code == 0
    exported = list(csv.reader(io.StringIO(listed.stdout)))[1:]
    assert {check_address(r[0]).key for r in exported} == good


CSV_BITS = st.sampled_from([
    "email,name,tags", "email", "a@example.org", "b@example.org,B", ",", ",,", '"', '""', "\n",
    "\r\n", "\r", "\x00", "\ufeff", "é", "中", ";", "x", " ", "=1+1", "\t",
])


@st.composite
def messy_csv(draw: st.DrawFn) -> bytes:
    text = draw(st.lists(CSV_BITS | st.text(max_size=6), max_size=40).map("".join))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, "replace")
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at:]
    return data


@pytest.mark.slow
@settings(FUZZ, max_examples=100)
@given(data=messy_csv(), strict=st.booleans())
def test_import_of_any_bytes_is_a_report_or_a_located_error(csv_site: Path, data: bytes,
                                                            strict: bool) -> None:
    path = csv_site / "messy.csv"
    path.write_bytes(data)
    _fresh_state(csv_site)
    result = run(csv_site, "subscribers", "import", str(path), *(["--strict"] if strict else []))
    assert_no_crash(result)
    assert result.exit_code in (0, 1), result.output
    lines = data.count(b"\n") + data.count(b"\r") + 1
    if result.stdout:  # the import ran: its summary accounts for every record
        counts = _summary(result.stdout)
        assert (counts["added"] + counts["existing"] + counts["duplicates"]
                + counts["suppressed"] + counts["bad"]) == counts["rows"]
        assert result.exit_code == (1 if counts["bad"] else 0)
        assert not strict or counts["bad"] == 0
    elif result.stderr.strip() == f"{path} is empty\nhint: the first line must be a header: " \
                                  "email,name,tags":
        return
    for m in located_lines(result.stderr):
        assert m["path"] == str(path), m.group(0)
        assert m["line"] is None or 1 <= int(m["line"]) <= lines, m.group(0)
    if result.exit_code == 1 and not result.stdout:
        count = run(csv_site, "subscribers", "count")
        assert count.stdout.endswith("total\t0\n"), "a failed import wrote subscribers"


# --- config.toml ----------------------------------------------------------------------------

TOML_BITS = st.sampled_from([
    "[newsletter]", "[editions]", "[email]", "[sender]", "[sender.smtp]", "[state]", "[build]",
    "[schedule]", "[[x]]", "[", "]", "title", "base_url", "timezone", "language", "kind",
    "group_by", "rate", "cron", " = ", "=", '"', "'", '"""', "'''", "\\", "\\u00", "\n", "\r\n",
    "#", ".", ",", "{", "}", "1", "-1", "1e999", "nan", "inf", "true", "1979-05-27",
    "07:32:00", "1979-05-27T07:32:00Z", '"https://x.org/"', '"UTC"', '"week"', "\x00", "\ufeff",
    "中", " ", "\t",
])


@pytest.fixture
def config_site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "issues").mkdir(parents=True)
    (root / "issues" / "a.md").write_text(issue("A", "2024-04-09", url="https://x.org/a"),
                                          "utf-8")
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
    "newsletter": ["title", "base_url", "description", "language", "timezone", "author",
                   "email"],
    "editions": ["group_by", "title", "subject", "preheader", "section_by", "section_order",
                 "week_start", "notes_dir", "lock_file"],
    "email": ["from", "reply_to", "list_id", "unsubscribe_url", "unsubscribe_mailto",
              "secret_env"],
    "build": ["out", "feed_limit", "issues_dir", "templates_dir"],
    "state": ["dir", "database"],
    "sender": ["kind", "rate", "hourly_cap", "daily_cap", "concurrency", "batch_size",
               "max_attempts", "max_consecutive_errors"],
    "schedule": ["cron", "misfire_grace"],
    "publish": ["command"],
}
BASE = {
    "newsletter": {"title": "T", "base_url": "https://digest.example.org/",
                   "timezone": "Asia/Shanghai", "email": "digest@example.org"},
    "editions": {"title": "T #{number}"},
    "email": {"from": "T <digest@example.org>"},
}
PATTERN_BITS = st.sampled_from(["{number}", "{title}", "{start:%Y-%m-%d}", "{number[0]}",
                                "{0}", "{}", "{nope}", "{number.real}", "{start:%n}", "{{",
                                "}}", "{", "}", "{title!r}", "{number:>5}", "{count:d}", "%",
                                "{week:02d}", "{newsletter}", " ", "x"])
patterns = st.lists(PATTERN_BITS, max_size=5).map("".join)
scalars = st.one_of(
    st.text(max_size=20), st.sampled_from(["", "week", "month", "UTC", "America", "zh-CN",
                                           "en_US", "14/s", "0/s", "30m", "1d", "smtp", "none",
                                           "* * * * *", "61 * * * *", "https://x.org",
                                           "ftp://x", "x\r\ny", "a" * 300]),
    patterns, st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True), st.booleans(),
    st.dates(), st.datetimes(), st.times())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
# Keys naming files and folders get names that stay inside the project: "/" or ".." would let
# `check` walk or write anywhere on this machine (an absolute [state] dir is legitimate).
PATH_KEYS = {("state", "dir"), ("state", "database"), ("build", "out"), ("build", "issues_dir"),
             ("build", "templates_dir"), ("editions", "notes_dir"), ("editions", "lock_file")}
# Values aimed at each key's own parser (time zones, locales, patterns, crons, rates …).
TAILORED: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("newsletter", "timezone"): st.sampled_from(["UTC", "America", "Asia", "a" * 300, "../x",
                                                 "Etc/GMT+1", "zone.tab", "posixrules", "",
                                                 "Asia/Shanghai\n", "UTC/"]),
    ("newsletter", "language"): st.sampled_from(["en", "zh-CN", "zh_CN", "", "-", "x" * 50,
                                                 "und", "root", "C", "en--US", "i-klingon"]),
    ("newsletter", "base_url"): st.sampled_from(["https://x.org/", "x.org", "http://[", "",
                                                 "https://x.org/\r\nX: y", "javascript:x"]),
    ("editions", "title"): patterns, ("editions", "subject"): patterns,
    ("editions", "preheader"): patterns,
    ("schedule", "cron"): st.sampled_from(["0 8 * * 1", "* * * * * *", "61 * * * *", "@daily",
                                           "0 8 * * mon-fri", "*/0 * * * *", "", "x"]),
    ("schedule", "misfire_grace"): st.sampled_from(["30m", "1e9h", "-1s", "", "10"]),
    ("sender", "rate"): st.sampled_from(["14/s", "0/s", "1e3/s", "3000/h", "/s", "14"]),
    ("sender", "kind"): st.sampled_from(["outbox", "smtp", "nosuch", "memory", ""]),
    ("email", "from"): st.sampled_from(["A <a@x.org>", "a\r\nBcc: b@x.org", "", "<>", "@"]),
}
path_values = st.one_of(
    st.text(st.characters(blacklist_characters="/\\.", blacklist_categories=["Cs"]),
            max_size=12),
    st.integers(), st.booleans(), st.lists(st.integers(), max_size=2))


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
    "a folder of the zoneinfo tree was an IsADirectoryError")
@example(tables={**BASE, "editions": {"title": "{number[0]}"}}).via(
    "indexing a number in a pattern was a TypeError")
@example(tables={**BASE, "editions": {"subject": "{number:999999999999}"}}).via(
    "an enormous width in a pattern was a MemoryError")
def test_any_value_for_a_known_key_is_ok_or_located_at_its_line(config_site: Path,
                                                               tables: dict[str, Any]) -> None:
    text = _document(tables)
    result = _config_result(config_site, text)
    if result.exit_code == 1:
        _config_problems(result, text, need_lines=True)


# --- command-line arguments -----------------------------------------------------------------

COMMANDS = [["build"], ["check"], ["editions"], ["new"], ["init"], ["send"], ["status"],
            ["subscribers", "add"], ["subscribers", "import"], ["subscribers", "export"],
            ["subscribers", "list"], ["subscribers", "remove"], ["subscribers", "count"]]
ARG_BITS = st.sampled_from([
    "--out", "--drafts", "--strict", "--json", "--url", "--tag", "--title", "--to", "--dry-run",
    "--yes", "-y", "--sender", "--retry-failed", "--name", "--status", "-h", "--help", "-C",
    "--nope", "-", "--", "1", "0", "-1", "2", "99999999999999999999999", "1.5", "abc",
    "a@example.org", "reader0@example.org", "ADA@EXAMPLE.ORG", "not an address", "readers.csv",
    "missing.csv", "outdir", "newproject", ".", "memory", "outbox", "smtp", "postmark",
    "nosuch", "active", "bounced", "https://x.org/p", "javascript:alert(1)", "x\ny", "中文",
    "a,b", "", " ", "\x01", "sub/dir", "config.toml", "issues",
])
# Generated text never contains a path separator or is only dots: `init`, `--out` and `new`
# must stay in the temporary directory the runner works in. Nor NUL: a real argv cannot hold
# one (C strings), and click's own path checks raise ValueError on it in-process.
arg_text = st.text(st.characters(blacklist_characters="/\\\x00", blacklist_categories=["Cs"]),
                   max_size=12).filter(lambda t: t.strip(".") != "")
NUMBERS = st.one_of(st.sampled_from(["1", "2", "0", "-1", "99999999999999999999999",
                                     "2147483648", "9223372036854775808", "1.5", "abc", ""]),
                    st.integers().map(str))
# What the first argument of each command usually is, so examples get past the parser.
POSITIONAL: dict[str, st.SearchStrategy[str]] = {
    "send": NUMBERS, "status": NUMBERS, "new": st.one_of(arg_text, ARG_BITS),
    "init": arg_text, "subscribers add": st.one_of(ARG_BITS, arg_text.map(lambda t: t + "@x.org")),
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
    (root / "issues" / "a.md").write_text(issue("A", "2024-04-09", url="https://x.org/a"),
                                          "utf-8")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "readers.csv").write_text(
        "email,name,tags\nreader0@example.org,R0,a\nreader1@example.org,R1,\nbad,,\n", "utf-8")
    monkeypatch.chdir(tmp_path / "work")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("command", [" ".join(c) for c in COMMANDS])
@settings(FUZZ, max_examples=15)
@given(data=st.data())
@example(data=None).via("status 99999999999999999999999 was an OverflowError from SQLite")
def test_any_arguments_are_exit_0_1_or_2_never_a_traceback(
        cli_site: Path, monkeypatch: pytest.MonkeyPatch, command: str,
        data: st.DataObject | None) -> None:
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


@pytest.mark.parametrize("title", [
    "Plain Digest", "Comma, Inc", 'Say "hi"', "Tab\there", "Ünïcode 周报",
    "Back\\slash", "Curly {braces}", "Line\nbreak", "<Angle> & @t",
])
def test_init_refuses_a_title_or_writes_a_project_that_checks(tmp_path: Path, title: str) -> None:
    made = run(tmp_path, "init", str(tmp_path / "new"), "--title", title)
    assert_no_crash(made)
    if made.exit_code == 1:
        return  # refused, with a message: fine
    assert made.exit_code == 0, made.output
    checked = run(tmp_path / "new", "check")
    assert checked.exit_code == 0, checked.stderr
