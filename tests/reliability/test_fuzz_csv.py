"""Fuzzing subscriber CSV imports: every bad row reported by line, good rows imported."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from newsletter.errors import NewsletterError
from newsletter.state.addresses import check_address, check_name, parse_tags
from tests.conftest import BASE_CONFIG
from tests.reliability import FUZZ, assert_no_crash, located_lines, run

# --- CSV imports ----------------------------------------------------------------------------

GOOD = [f"reader{i}@example.org" for i in range(8)] + [
    "Ada.Lovelace@Example.ORG",
    "δοκιμή@παράδειγμα.δοκιμή",
]
BAD = [
    "",
    " ",
    "not-an-address",
    "a@",
    "@b.org",
    "a b@c.org",
    "a@b@c.org",
    "a@localhost",
    "a@-x.org",
    "x" * 70 + "@example.org",
    "a@b.org\x00",
    "a\r\n@b.org",
]
emails = st.one_of(
    st.sampled_from(GOOD),
    st.sampled_from(GOOD).map(str.upper),
    st.sampled_from(GOOD).map(lambda e: f"  {e} "),
    st.sampled_from(BAD),
    st.text(max_size=15),
)
names = st.one_of(
    st.just(""),
    st.text(max_size=12),
    st.sampled_from(
        [
            "Ada",
            "Grace, Jr",
            'Dave "the" man',
            "line\nbreak",
            "tab\there",
            "nul\x00",
            "\u2028",
            "x" * 300,
            "李雷",
            "=cmd|' /C calc'!A0",
        ]
    ),
)
tags = st.one_of(
    st.just(""),
    st.text(max_size=10),
    st.sampled_from(["ai;ml", "a,b", " x ; y ", "t" * 70, "中文", ";;", "bad\x01tag"]),
)


@st.composite
def csv_rows(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    header = draw(
        st.sampled_from(
            [
                ["email", "name", "tags"],
                ["Email", "Name"],
                ["email"],
                ["name", "email", "tags", "notes"],
                [" EMAIL ", "tags"],
            ]
        )
    )
    rows = []
    for _ in range(draw(st.integers(0, 12))):
        values = {
            "email": draw(emails),
            "name": draw(names),
            "tags": draw(tags),
            "notes": draw(st.text(max_size=5)),
        }
        row = [values[h.strip().lower()] for h in header]
        if draw(st.integers(0, 9)) == 0:
            row = row[: draw(st.integers(0, len(row)))] + draw(
                st.lists(st.text(max_size=4), max_size=2)
            )
        rows.append(row)
    return header, rows


def _expected_problem(row: list[str], header: list[str]) -> bool:
    """Whether the import must report this (well-formed CSV) row as bad: the documented rules."""
    names = [h.strip().lower() for h in header]
    if len(row) > len(names) and any(f.strip() for f in row[len(names) :]):
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
    m = re.search(
        r": (\d+) added, (\d+) already on the list, (\d+) duplicates, (\d+) suppressed,"
        r" (\d+) bad rows \((\d+) rows, (\d+) batches",
        stdout,
    )
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
@given(
    table=csv_rows(),
    bom=st.booleans(),
    dialect=st.sampled_from(
        [
            # QUOTE_MINIMAL quotes only the characters of the line terminator: with "\n" a lone CR
            # in a field would go out unquoted and rightly end the record there.
            ("\r\n", csv.QUOTE_MINIMAL),
            ("\n", csv.QUOTE_ALL),
            ("\r\n", csv.QUOTE_ALL),
            ("\n", csv.QUOTE_NONNUMERIC),
        ]
    ),
)
def test_import_reports_exactly_the_bad_rows_by_line(
    csv_site: Path, table: tuple[list[str], list[list[str]]], bom: bool, dialect: tuple[str, Any]
) -> None:
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
    reported = {
        int(m["line"]) for m in located_lines(result.stderr) if m["path"] == str(path) and m["line"]
    }
    assert reported == bad_lines, result.stderr
    assert result.exit_code == (1 if bad_lines else 0), result.output
    counts = _summary(result.stdout)
    assert counts["bad"] == len(bad_lines) and counts["rows"] == len(rows)
    assert (
        counts["added"]
        + counts["existing"]
        + counts["duplicates"]
        + counts["suppressed"]
        + counts["bad"]
    ) == counts["rows"]
    good = {
        check_address(r[[h.strip().lower() for h in header].index("email")]).key
        for i, r in enumerate(rows)
        if starts[i] not in bad_lines
    }
    assert counts["added"] == len(good)
    listed = run(csv_site, "subscribers", "export")
    assert listed.exit_code == 0
    exported = list(csv.reader(io.StringIO(listed.stdout)))[1:]
    assert {check_address(r[0]).key for r in exported} == good


CSV_BITS = st.sampled_from(
    [
        "email,name,tags",
        "email",
        "a@example.org",
        "b@example.org,B",
        ",",
        ",,",
        '"',
        '""',
        "\n",
        "\r\n",
        "\r",
        "\x00",
        "\ufeff",
        "é",
        "中",
        ";",
        "x",
        " ",
        "=1+1",
        "\t",
    ]
)


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
def test_import_of_any_bytes_is_a_report_or_a_located_error(
    csv_site: Path, data: bytes, strict: bool
) -> None:
    path = csv_site / "messy.csv"
    path.write_bytes(data)
    _fresh_state(csv_site)
    result = run(csv_site, "subscribers", "import", str(path), *(["--strict"] if strict else []))
    assert_no_crash(result)
    assert result.exit_code in (0, 1), result.output
    lines = data.count(b"\n") + data.count(b"\r") + 1
    if result.stdout:  # the import ran: its summary accounts for every record
        counts = _summary(result.stdout)
        assert (
            counts["added"]
            + counts["existing"]
            + counts["duplicates"]
            + counts["suppressed"]
            + counts["bad"]
        ) == counts["rows"]
        assert result.exit_code == (1 if counts["bad"] else 0)
        assert not strict or counts["bad"] == 0
    elif (
        result.stderr.strip() == f"{path} is empty\nhint: the first line must be a header: "
        "email,name,tags"
    ):
        return
    for m in located_lines(result.stderr):
        assert m["path"] == str(path), m.group(0)
        assert m["line"] is None or 1 <= int(m["line"]) <= lines, m.group(0)
    if result.exit_code == 1 and not result.stdout:
        count = run(csv_site, "subscribers", "count")
        assert count.stdout.endswith("total\t0\n"), "a failed import wrote subscribers"
