"""Storage faults: locked database, full disk, read-only state, crashes in build and import.

Each ends in a clear error (exit 1, no traceback), leaves what was there intact, and a rerun
succeeds.
"""

from __future__ import annotations

import builtins
import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import Config, load_config
from newsletter.models import SubscriberStatus
from newsletter.publish import writer as writer_module
from newsletter.publish.writer import SiteWriter
from newsletter.senders.outbox import OutboxSender
from newsletter.state import subscribers
from newsletter.state.db import open_database
from tests.conftest import BASE_CONFIG, MakeProject, issue
from tests.reliability import ENV, NOW, SECRET, Status, assert_no_crash, run, snapshot, status

FILES = {
    "issues/a.md": issue("First", "2024-04-09", "See ![fig](fig.png).", url="https://x.org/1"),
    "issues/fig.png": "\x89PNG fake",
    "issues/b.md": issue("Second", "2024-04-16", "Two.", url="https://x.org/2"),
}
SUBPROCESS_ENV = {
    **{k: v for k, v in os.environ.items() if k not in ENV},
    "NEWSLETTER_NOW": NOW,
    "NEWSLETTER_SECRET": SECRET,
}


@pytest.fixture
def site(make_project: MakeProject, frozen_now: object) -> Config:
    return make_project(FILES)


def newsletter(
    root: Path, *args: str, env: dict[str, str] | None = None, wrap: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m newsletter -C root ARGS` in its own process (optionally under ``wrap``)."""
    command = [*(wrap or []), sys.executable, "-m", "newsletter", "-C", str(root), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**SUBPROCESS_ENV, **(env or {})}
    )


def add_readers(root: Path, count: int) -> None:
    db = open_database(load_config(root, environ={}).database_url)
    try:
        for i in range(count):
            subscribers.add(db, f"reader{i:02d}@example.org")
    finally:
        db.close()


def db_counts(root: Path) -> dict[str, int]:
    """Rows per table, read with plain sqlite3, after an integrity check."""
    conn = sqlite3.connect(root / ".newsletter" / "state.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {
            t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("subscribers", "deliveries", "suppressions")
        }
    finally:
        conn.close()


# --- a database locked by another process ---------------------------------------------------

LOCKER = textwrap.dedent("""
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    conn.execute("COMMIT")
""")


@pytest.fixture
def locked(site: Config) -> Iterator[Callable[[], None]]:
    """Hold an exclusive write lock on the state database from another process; the fixture
    value releases it."""
    add_readers(site.root, 5)
    proc = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(site.state_dir / "state.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"

    def release() -> None:
        if proc.poll() is None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            assert proc.wait(10) == 0
            proc.stdout.close()

    yield release
    release()


def test_a_locked_database_is_a_clear_error_after_the_busy_timeout(
    site: Config, locked: Callable[[], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # [state] busy_timeout, shortened through its environment override.
    monkeypatch.setenv("NEWSLETTER_STATE__BUSY_TIMEOUT", '"0.5s"')
    before = db_counts(site.root)
    for args in (["subscribers", "add", "new@example.org"], ["send", "1", "--yes"]):
        started = time.monotonic()
        result = run(site.root, *args)
        waited = time.monotonic() - started
        assert_no_crash(result)
        assert result.exit_code == 1, result.output
        assert (
            f"the state database {site.state_dir / 'state.db'} is locked by another "
            "process (waited 0.5 s)" in result.stderr
        )
        assert "hint: another newsletter command" in result.stderr
        assert 0.5 <= waited < 5, waited
    assert not (site.root / "outbox").exists()
    locked()
    assert db_counts(site.root) == before
    assert run(site.root, "subscribers", "add", "new@example.org").exit_code == 0
    sent = run(site.root, "send", "1", "--yes")
    assert sent.exit_code == 0, sent.output
    assert status(site.root) == Status(6, 6, 0, 0, 0)


@pytest.mark.slow
def test_a_locked_database_with_the_real_timeout_in_a_real_process(
    site: Config, locked: Callable[[], None]
) -> None:
    started = time.monotonic()
    result = newsletter(site.root, "subscribers", "add", "new@example.org")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "is locked by another process (waited 5 s)" in result.stderr
    assert time.monotonic() - started >= 5
    locked()
    assert newsletter(site.root, "subscribers", "add", "new@example.org").returncode == 0


# --- a full disk ----------------------------------------------------------------------------


def _enospc(path: object = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


class _FullDisk:
    """A file opened for writing on a full disk: created, but no byte fits."""

    def __init__(self, path: str | os.PathLike[str], mode: str = "r") -> None:
        self.path = path
        self.fh = builtins.open(path, mode)  # noqa: SIM115 - closed by __exit__

    def write(self, data: bytes) -> int:
        raise _enospc(self.path)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


def _disk_full_at(fail_at: int, count: list[int]) -> Callable[..., None]:
    """SiteWriter.write whose ``fail_at``-th file hits a full disk (``count`` counts calls).

    The failure comes from the file write inside SiteWriter.write, where the OS would raise
    it, so the writer's own error handling is what is under test.
    """
    original = SiteWriter.write

    def write(self: SiteWriter, rel: str, data: bytes | str) -> None:
        count[0] += 1
        if count[0] != fail_at:
            return original(self, rel, data)
        writer_module.open = _FullDisk  # type: ignore[attr-defined]
        try:
            return original(self, rel, data)
        finally:
            del writer_module.open  # type: ignore[attr-defined]

    return write


def _edit_issue(site: Config) -> None:
    path = site.root / "issues" / "a.md"
    path.write_text(path.read_text("utf-8").replace("First", "First, revised"), "utf-8")


@pytest.mark.slow
def test_a_full_disk_while_writing_public_leaves_the_previous_site(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(site.root, "build").exit_code == 0
    before = snapshot(site.root / "public")
    _edit_issue(site)
    fail_at = 0
    while True:  # the disk fills up at the 1st file written, then the 2nd, … until none is left
        fail_at += 1
        count = [0]
        with monkeypatch.context() as m:
            m.setattr(SiteWriter, "write", _disk_full_at(fail_at, count))
            result = run(site.root, "build")
        assert_no_crash(result)
        if count[0] < fail_at:  # this build wrote fewer files: the disk never filled up
            break
        assert result.exit_code == 1, (fail_at, result.output)
        assert ": cannot write: the disk is full" in result.stderr, result.stderr
        assert "hint: the previous output was left untouched" in result.stderr
        assert snapshot(site.root / "public") == before, fail_at
        assert _leftovers(site.root) == []
    assert fail_at > 6  # at least the changed edition's 3 files and the 3 feeds were covered
    assert result.exit_code == 0, result.output
    after = snapshot(site.root / "public")
    assert after != before and b"First, revised" in after["editions/1/index.html"]


def test_a_full_disk_while_copying_an_asset_leaves_the_previous_site(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(site.root, "build").exit_code == 0
    before = snapshot(site.root / "public")
    (site.root / "issues" / "fig.png").write_bytes(b"\x89PNG changed")

    def copy2(src: Any, dst: Any, **kw: Any) -> None:
        raise _enospc(dst)

    with monkeypatch.context() as m:
        m.setattr("newsletter.publish.writer.shutil.copy2", copy2)
        result = run(site.root, "build")
    assert (
        result.exit_code == 1 and "assets/fig.png: cannot write: the disk is full" in result.stderr
    ), result.stderr
    assert snapshot(site.root / "public") == before
    assert run(site.root, "build").exit_code == 0
    assert (site.root / "public" / "assets" / "fig.png").read_bytes() == b"\x89PNG changed"


def test_a_full_disk_while_writing_editions_lock_is_a_clear_error(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    def mkstemp(*args: Any, **kw: Any) -> tuple[int, str]:
        raise _enospc(site.root / ".editions.tmp")

    with monkeypatch.context() as m:
        m.setattr("newsletter.numbering.tempfile.mkstemp", mkstemp)
        result = run(site.root, "build")
    assert_no_crash(result)
    assert result.exit_code == 1
    assert (
        f"{site.root / 'editions.lock'}: cannot write the edition numbers: No space left "
        "on device" in result.stderr
    ), result.stderr
    assert not (site.root / "editions.lock").exists()
    assert [p.name for p in site.root.iterdir() if p.name.startswith(".editions.")] == []
    assert run(site.root, "build").exit_code == 0
    assert '"2024-W15" = 1' in (site.root / "editions.lock").read_text("utf-8")


def _outbox_recipients(root: Path) -> Counter[str]:
    parser = BytesHeaderParser()
    return Counter(
        str(parser.parsebytes(p.read_bytes())["To"])
        for p in (root / "outbox" / "new").glob("*.eml")
    )


def test_a_full_disk_while_writing_the_outbox_stops_without_marking_anything_unsent(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_readers(site.root, 20)
    original, count = OutboxSender._write, [0]

    def write(self: OutboxSender, tmp: Path, data: bytes) -> None:
        count[0] += 1
        if count[0] > 7:  # the disk is full from the 8th message on
            raise _enospc(tmp)
        original(self, tmp, data)

    with monkeypatch.context() as m:
        m.setattr(OutboxSender, "_write", write)
        result = run(site.root, "send", "1", "--yes")
    assert_no_crash(result)
    assert result.exit_code == 1, result.output
    assert "cannot write to the outbox" in result.stderr and "No space left" in result.stderr
    assert "hint: run `newsletter send 1` again to resume" in result.stderr
    delivered = _outbox_recipients(site.root)
    assert len(delivered) == 7 and max(delivered.values()) == 1
    s = status(site.root)
    assert (s.sent, s.failed, s.pending) == (7, 0, 13)  # exactly the files that exist
    conn = sqlite3.connect(site.state_dir / "state.db")
    sent = {row[0] for row in conn.execute("SELECT email FROM deliveries WHERE status='sent'")}
    conn.close()
    assert sent == set(delivered)
    assert list((site.root / "outbox" / "tmp").iterdir()) == []  # no half-written files
    again = run(site.root, "send", "1", "--yes")
    assert again.exit_code == 0, again.output
    assert _outbox_recipients(site.root) == Counter(f"reader{i:02d}@example.org" for i in range(20))
    assert status(site.root) == Status(20, 20, 0, 0, 0)


# --- a read-only state directory ------------------------------------------------------------


def _read_only_wrapper(folder: Path) -> tuple[list[str], Callable[[], None]]:
    """(command prefix, undo) that makes ``folder`` read-only for one subprocess.

    As a normal user, chmod does it. Tests run as root here, and root writes through any mode
    bits, so instead the folder is bind-mounted read-only inside a private mount namespace of
    that one process (`unshare -m`): a real EROFS, invisible to everything else.
    """
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)

        def undo() -> None:
            for p, mode in modes.items():
                p.chmod(mode)

        return [], undo
    script = 'mount --bind "$0" "$0" && mount -o remount,ro,bind "$0" "$0" && exec "$@"'
    wrap = ["unshare", "-m", "sh", "-c", script, str(folder)]
    probe = subprocess.run(
        [*wrap, "sh", "-c", f'touch "{folder}/.probe"'], capture_output=True, text=True
    )
    if shutil.which("unshare") is None or "Read-only file system" not in probe.stderr:
        pytest.skip(f"running as root without a way to mount read-only: {probe.stderr[:200]}")
    return wrap, lambda: None


@pytest.mark.slow
def test_a_read_only_state_directory_is_a_clear_error_and_corrupts_nothing(site: Config) -> None:
    add_readers(site.root, 3)
    assert newsletter(site.root, "build").returncode == 0
    state = site.state_dir
    csv_file = site.root / "more.csv"
    csv_file.write_text("email\nmore@example.org\n", "utf-8")
    before, counts = snapshot(state), db_counts(site.root)
    wrap, undo = _read_only_wrapper(state)
    try:
        for args in (
            ["subscribers", "add", "new@example.org"],
            ["send", "1", "--yes"],
            ["subscribers", "import", str(csv_file)],
        ):
            result = newsletter(site.root, *args, wrap=wrap)
            assert result.returncode == 1, (args, result.stdout, result.stderr)
            assert "Traceback" not in result.stderr
            assert "state database" in result.stderr and str(state) in result.stderr, result.stderr
            assert "hint: " in result.stderr
        # The state directory holds only caches for a build: it still works, just slower.
        (site.root / "issues" / "b.md").write_text(issue("Second, again", "2024-04-16"), "utf-8")
        built = newsletter(site.root, "build", wrap=wrap)
        assert built.returncode == 0, built.stderr
        assert "Second, again" in (site.root / "public/editions/2/index.html").read_text("utf-8")
    finally:
        undo()
    assert snapshot(state) == before and db_counts(site.root) == counts
    assert not (site.root / "outbox").exists()
    assert newsletter(site.root, "subscribers", "add", "new@example.org").returncode == 0
    assert newsletter(site.root, "send", "1", "--yes").returncode == 0
    assert status(site.root) == Status(4, 4, 0, 0, 0)


# --- crashes --------------------------------------------------------------------------------


@pytest.fixture
def crash_hook() -> Callable[..., dict[str, str]]:
    # crash_hook/sitecustomize.py is put on the child's PYTHONPATH only; it is inert unless its
    # variables (CRASH_AFTER_WRITES, CRASH_AFTER_BATCHES) are set.
    folder = Path(__file__).resolve().parent / "crash_hook"

    def env(**variables: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
        return {"PYTHONPATH": path, **variables}

    return env


@pytest.mark.slow
# The rebuild writes the changed edition's 3 files, then the feeds: crash before the first,
# after the first, after the edition (before the feeds), right after the atomic exchange of the
# trees, and (where the exchange is unsupported) between the two renames of the fallback.
@pytest.mark.parametrize("when", ["0", "1", "3", "exchange", "commit"])
def test_a_crash_during_build_keeps_the_previous_site(
    site: Config, when: str, crash_hook: Callable[..., dict[str, str]]
) -> None:
    assert run(site.root, "build").exit_code == 0
    before = snapshot(site.root / "public")
    _edit_issue(site)
    crashed = newsletter(site.root, "build", env=crash_hook(CRASH_AFTER_WRITES=when))
    assert crashed.returncode == 137, crashed.stderr
    if when == "commit":  # the old tree was moved aside, the new one not yet in place
        assert not (site.root / "public").exists()
        assert snapshot(site.root / ".public.old") == before
    elif when == "exchange":  # the new tree is in place, the old one not yet removed
        assert b"First, revised" in snapshot(site.root / "public")["editions/1/index.html"]
        [old] = site.root.glob(".public.staging-*")
        assert snapshot(old) == before
    else:
        assert snapshot(site.root / "public") == before
    result = run(site.root, "build")
    assert result.exit_code == 0, result.output
    after = snapshot(site.root / "public")
    assert b"First, revised" in after["editions/1/index.html"]
    assert set(after) == set(before)
    assert _leftovers(site.root) == []


def _leftovers(root: Path) -> list[str]:
    """Staging or old trees a build left beside public/ (the build lock file is meant to stay)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name.startswith(".public.") and (p.name != ".public.lock")
    )


@pytest.mark.slow
def test_a_crash_during_a_csv_import_leaves_whole_batches_and_the_rerun_accounts_for_all(
    site: Config, crash_hook: Callable[..., dict[str, str]]
) -> None:
    db = open_database(site.database_url)
    try:
        subscribers.add(db, "row05@example.org")  # already on the list
        subscribers.add(db, "row27@example.org")
        subscribers.set_status(db, "row27@example.org", SubscriberStatus.BOUNCED)
    finally:
        db.close()
    lines = ["email,name,tags"]
    for i in range(40):
        if i % 9 == 8:
            lines.append(f"not-an-address-{i},Bad,")
        elif i % 13 == 12:
            lines.append(f"ROW{i - 1:02d}@example.org,Duplicate,")
        else:
            lines.append(f"row{i:02d}@example.org,Row {i},t")
    csv_file = site.root / "readers.csv"
    csv_file.write_text("\n".join(lines) + "\n", "utf-8")

    crashed = newsletter(
        site.root, "subscribers", "import", str(csv_file), env=crash_hook(CRASH_AFTER_BATCHES="1")
    )
    assert crashed.returncode == 137, crashed.stderr
    conn = sqlite3.connect(site.state_dir / "state.db")
    imported = {r[0] for r in conn.execute("SELECT email FROM subscribers WHERE source='import'")}
    conn.close()
    good = [line.split(",")[0] for line in lines[1:] if line.startswith("row")]
    first_batch = good[:10]  # the first ten unique good rows, in file order
    assert imported == set(first_batch) - {"row05@example.org"}

    result = run(site.root, "subscribers", "import", str(csv_file))
    assert_no_crash(result)
    assert result.exit_code == 1  # the bad rows
    bad = sum(1 for line in lines[1:] if line.startswith("not-an"))
    duplicates = sum(1 for line in lines[1:] if line.startswith("ROW"))
    summary = (
        f"{csv_file}: {len(good) - 10 - 1} added, 10 already on the list, "
        f"{duplicates} duplicates, 1 suppressed, {bad} bad rows (40 rows, 1 batches,"
    )
    assert result.stdout.startswith(summary), result.stdout
    listed = {
        line.split("\t")[0]
        for line in run(site.root, "subscribers", "list").stdout.split()
        if "@" in line
    }
    assert set(good) <= listed


# --- an output folder that would swallow the project ----------------------------------------


@pytest.mark.parametrize(
    ("how", "out"),
    [
        ("--out", "."),
        ("--out", ".."),
        ("--out", "issues"),
        ("--out", "editions"),
        ("--out", ".newsletter"),
        ("--out", "templates"),
        ("config", "."),
        ("config", "issues/.."),
    ],
)
def test_build_never_replaces_the_project_or_its_inputs(
    site: Config, monkeypatch: pytest.MonkeyPatch, how: str, out: str
) -> None:
    """The atomic swap replaces the output folder whole: pointed at the project (or a folder
    it reads), a build used to delete config.toml and every issue file."""
    for folder in ("editions", "templates"):
        (site.root / folder).mkdir(exist_ok=True)
        (site.root / folder / "keep.txt").write_text("mine", "utf-8")
    assert run(site.root, "subscribers", "add", "reader@example.org").exit_code == 0
    before = snapshot(site.root)
    monkeypatch.chdir(site.root)
    if how == "config":
        site.path.write_text(site.path.read_text("utf-8") + f'\n[build]\nout = "{out}"\n', "utf-8")
        before = snapshot(site.root)
        result = run(site.root, "build")
    else:
        result = run(site.root, "build", "--out", out)
    assert_no_crash(result)
    assert result.exit_code == 1, result.output
    assert (
        "cannot build here: every build replaces this folder whole, which would delete"
        in result.stderr
    ), result.stderr
    assert snapshot(site.root) == before
    assert sorted(p.name for p in site.root.parent.iterdir()) == ["site"]


def test_an_empty_path_in_the_config_is_a_located_error(site: Config) -> None:
    for section, key in (
        ("build", "out"),
        ("build", "issues_dir"),
        ("editions", "notes_dir"),
        ("editions", "lock_file"),
    ):
        text = (
            BASE_CONFIG + f'\n[{section}]\n{key} = ""\n'
            if section == "build"
            else BASE_CONFIG.replace("[editions]\n", f'[editions]\n{key} = ""\n')
        )
        site.path.write_text(text, "utf-8")
        line = next(n for n, t in enumerate(text.splitlines(), 1) if t == f'{key} = ""')
        result = run(site.root, "build")
        assert result.exit_code == 1
        assert result.stderr.startswith(
            f"config.toml:{line}: [{section}] {key}: must not be empty"
        ), result.stderr
