"""CSV import: located problems, dedupe, suppression, --strict, batches, crashes, speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.errors import StateError
from newsletter.models import SubscriberStatus
from newsletter.state import Database, SubscriberError, csv_import, open_database
from newsletter.state import subscribers as subs
from newsletter.state.schema import subscribers

MESSY = [
    "email,name,tags,notes",  # 1  notes: a column the import ignores
    "ada@example.org,Ada,ai;ml,",  # 2
    '"grace@example.org","Grace",navy,"met at',  # 3  a quoted field spanning two lines
    'the conference"',  # 4
    "not-an-address,Bad,,",  # 5  bad
    "ADA@EXAMPLE.ORG,Dup,,",  # 6  duplicate of line 2
    "",  # 7  blank
    'bob@example.org,"Bob, Jr",x,y,extra',  # 8  bad: too many fields
    'carol@example.org,"Carol',  # 9  bad: a line break in the name
    'Evil",,',  # 10
    ",NoEmail,,",  # 11 bad
    'dave@example.org,"Dave "the" man",,',  # 12 bad: stray quote
    "eve@xn--bcher-kva.de,Eve",  # 13 fewer fields than the header is fine
]


def messy_problems(path: Path, newline: str = "\n") -> list[str]:
    return [
        f"{path}:5: invalid email address 'not-an-address': An email address must have an @-sign.",
        f"{path}:8: 5 fields but the header has 4 (quote a field that contains a comma)",
        f"{path}:9: name {'Carol' + newline + 'Evil'!r} contains a line break or control "
        f"character (U+000{'D' if newline == chr(13) + chr(10) else 'A'})",
        f"{path}:11: missing email address",
        f"{path}:12: malformed CSV: ',' expected after '\"'",
    ]


def write(path: Path, lines: list[str], *, newline: str = "\n", bom: bool = False) -> Path:
    path.write_bytes(
        (b"\xef\xbb\xbf" if bom else b"") + newline.join(lines).encode() + newline.encode()
    )
    return path


@pytest.mark.parametrize(("newline", "bom"), [("\n", False), ("\r\n", True)])
def test_bad_rows_are_reported_with_their_physical_line(
    db: Database, tmp_path: Path, newline: str, bom: bool
) -> None:
    path = write(tmp_path / "list.csv", MESSY, newline=newline, bom=bom)
    report = subs.import_csv(db, path)
    assert [str(p) for p in report.problems] == messy_problems(path, newline)
    assert (report.rows, report.added, report.duplicates, report.existing) == (9, 3, 1, 0)
    assert report.batches == 1
    grace = subs.get(db, "grace@example.org")
    assert grace is not None and (grace.name, grace.tags) == ("Grace", ("navy",))
    ada = subs.get(db, "ada@example.org")
    assert ada is not None and (ada.name, ada.tags) == ("Ada", ("ai", "ml"))
    eve = subs.get(db, "eve@bücher.de")
    assert eve is not None and eve.email == "eve@xn--bcher-kva.de"
    assert subs.count(db)["active"] == 3


def test_strict_writes_nothing_and_lists_every_problem(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path / "list.csv", MESSY)
    with pytest.raises(SubscriberError) as info:
        subs.import_csv(db, path, strict=True)
    assert [str(p) for p in info.value.problems] == messy_problems(path)
    assert info.value.lines()[:5] == messy_problems(path)
    assert info.value.hint == "fix these rows and import again; nothing was imported"
    assert subs.count(db)["active"] == 0


def test_strict_imports_a_clean_file(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path / "list.csv", ["Email,Name", "a@example.org,A", "b@example.org,B"])
    report = subs.import_csv(db, path, strict=True)
    assert (report.added, report.problems) == (2, ())


def test_existing_subscribers_are_left_alone(db: Database, tmp_path: Path) -> None:
    subs.add(db, "Ada@Example.org", "Ada Lovelace")
    subs.add(db, "p@example.org", status=SubscriberStatus.PENDING)
    path = write(
        tmp_path / "list.csv",
        ["email,name", "ada@example.org,Other", "P@example.org,", "new@example.org,New"],
    )
    report = subs.import_csv(db, path)
    assert (report.added, report.existing) == (1, 2)
    ada, p = subs.get(db, "ada@example.org"), subs.get(db, "p@example.org")
    assert ada is not None and ada.name == "Ada Lovelace" and ada.email == "Ada@Example.org"
    assert p is not None and p.status is SubscriberStatus.PENDING


def test_suppression_survives_remove_and_reimport(db: Database, tmp_path: Path) -> None:
    subs.add(db, "ada@example.org")
    subs.add(db, "bob@example.org")
    subs.set_status(db, "ada@example.org", SubscriberStatus.UNSUBSCRIBED)
    subs.set_status(db, "bob@example.org", SubscriberStatus.COMPLAINED, reason="spam report")
    assert subs.remove(db, "ada@example.org")
    path = write(
        tmp_path / "list.csv", ["email", "ADA@example.org", "bob@example.org", "cy@example.org"]
    )
    report = subs.import_csv(db, path)
    assert [str(p) for p in report.skipped] == [
        f"{path}:2: skipped ADA@example.org: suppressed (unsubscribed)",
        f"{path}:3: skipped bob@example.org: suppressed (spam report)",
    ]
    assert (report.added, report.existing, report.problems) == (1, 0, ())
    assert subs.get(db, "ada@example.org") is None
    bob = subs.get(db, "bob@example.org")
    assert bob is not None and bob.status is SubscriberStatus.COMPLAINED


def test_non_utf8_bytes_spoil_only_their_row(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(b"email,name\na@example.org,A\nb@example.org,B\xe9atrice\nc@example.org,C\n")
    report = subs.import_csv(db, path)
    assert [str(p) for p in report.problems] == [f"{path}:3: not valid UTF-8"]
    assert report.added == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("\n\n", "is empty"),
        (
            "mail,name\na@example.org,A\n",
            "header row must name each column once, including 'email'",
        ),
        ("email,name,Email\na@example.org,A,b\n", "(found: email, name, email)"),
    ],
)
def test_a_bad_header_stops_the_import(
    db: Database, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SubscriberError) as info:
        subs.import_csv(db, path)
    assert message in info.value.message
    assert info.value.hint == "the first line must be a header: email,name,tags"
    assert subs.count(db)["active"] == 0


def test_missing_file(db: Database, tmp_path: Path) -> None:
    with pytest.raises(SubscriberError, match=r"cannot read .*nope\.csv: No such file"):
        subs.import_csv(db, tmp_path / "nope.csv")


def numbered(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("email,name,tags\r\n")
        f.writelines(f"user{i}@example.org,User {i},t{i % 7}\r\n" for i in range(n))
    return path


def test_batches_are_committed_whole(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = numbered(tmp_path / "list.csv", 25)
    real = csv_import._write_batch
    calls = 0

    def fail_third(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise StateError("the state database x is locked by another process (waited 5 s)")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(csv_import, "_write_batch", fail_third)
    with pytest.raises(StateError) as info:
        subs.import_csv(db, path, batch_size=10)
    assert info.value.message == (
        "the state database x is locked by another process (waited 5 s) (importing "
        f"{path}: 2 batches with 20 new subscribers were committed before this)"
    )
    assert info.value.hint is not None and "rows already imported are skipped" in info.value.hint
    assert subs.count(db)["active"] == 20
    monkeypatch.setattr(csv_import, "_write_batch", real)
    report = subs.import_csv(db, path, batch_size=10)
    assert (report.added, report.existing, report.batches) == (5, 20, 3)


def test_kill_during_import_leaves_whole_batches(tmp_path: Path, sqlite_url: str) -> None:
    path = numbered(tmp_path / "list.csv", 100_000)
    open_database(sqlite_url).close()
    code = (
        "import sys; from newsletter.state import open_database; "
        "from newsletter.state.csv_import import import_csv; "
        "import_csv(open_database(sys.argv[1]), sys.argv[2], batch_size=1000)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, sqlite_url, str(path)])
    with open_database(sqlite_url) as db:
        try:
            deadline = time.monotonic() + 60
            while _count(db) < 3000 and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait()
        committed = _count(db)
    assert child.returncode == -signal.SIGKILL, "the import finished before it was killed"
    assert 3000 <= committed < 100_000
    assert committed % 1000 == 0


def _count(db: Database) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(subscribers)).scalar_one())


def test_import_100k_rows_quickly(db: Database, tmp_path: Path) -> None:
    path = numbered(tmp_path / "big.csv", 100_000)
    cpu = time.process_time()
    report = subs.import_csv(db, path)
    cpu = time.process_time() - cpu
    print(
        f"\n100,000-row import on {db.dialect}: {report.seconds:.2f} s wall, {cpu:.2f} s CPU "
        f"in this process, load average {os.getloadavg()[0]:.1f}"
    )
    assert (report.added, report.rows, report.batches, report.problems) == (
        100_000,
        100_000,
        20,
        (),
    )
    assert report.seconds < 30
    assert subs.count(db)["active"] == 100_000
    last = subs.get(db, "USER99999@example.org")
    assert last is not None and (last.name, last.tags) == ("User 99999", ("t4",))
