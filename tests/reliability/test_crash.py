"""Crash consistency of `newsletter send`: SIGKILL and SIGTERM at seeded moments, then resume.

The SMTP server runs in its own process and fsyncs one line per accepted recipient before it
answers 250, so what it recorded is exactly what a reader would have received. The guarantee
under test (docs/reliability.md): after any number of crashes and resumes every subscriber has
the edition, and the only duplicates are messages the server accepted in the instant before a
SIGKILL: at most one per connection (`concurrency`) per kill. SIGTERM is graceful: none.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter.config import load_config
from newsletter.state import subscribers
from newsletter.state.db import open_database
from tests.conftest import BASE_CONFIG, issue
from tests.smtpd_fixture import ServerProcess, server_process

RECIPIENTS = 2000
CONCURRENCY = 4
SEED = 20261121
ENV = {
    "NEWSLETTER_SECRET": "crash-test-secret-0123456789",
    "NEWSLETTER_NOW": "2024-06-01T00:00:00+00:00",
}


def _project(root: Path, port: int) -> Path:
    root.mkdir()
    (root / "config.toml").write_text(
        BASE_CONFIG
        + f"""
[sender]
kind = "smtp"
concurrency = {CONCURRENCY}

[sender.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
helo = "crash-test"
timeout = 10
""",
        encoding="utf-8",
    )
    (root / "issues").mkdir()
    (root / "issues" / "a.md").write_text(
        issue("Paper", "2024-04-09", "Body " * 2000, url="https://arxiv.org/abs/1"), "utf-8"
    )
    csv = root / "readers.csv"
    csv.write_text(
        "email,name,tags\n"
        + "".join(f"reader{i:04d}@example.org,Reader {i},\n" for i in range(RECIPIENTS)),
        "utf-8",
    )
    db = open_database(load_config(root, environ={}).database_url)
    try:
        report = subscribers.import_csv(db, csv)
    finally:
        db.close()
    assert report.added == RECIPIENTS
    return root


def _start(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-C", str(root), "send", "1", "--yes"],
        env={**os.environ, **ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(server: ServerProcess, proc: subprocess.Popen[bytes], count: int) -> None:
    deadline = time.monotonic() + 60
    while len(server.received()) < count and proc.poll() is None:
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.002)


def _counts(server: ServerProcess) -> Counter[str]:
    return Counter(rcpt for _mid, rcpt in server.received())


def _finish(root: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "newsletter", "-C", str(root), "send", "1", "--yes"],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    status = subprocess.run(
        [sys.executable, "-m", "newsletter", "-C", str(root), "status", "1"],
        env={**os.environ, **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return status.stdout


@pytest.mark.slow
def test_sigkill_at_ten_seeded_moments_loses_no_one(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    moments = sorted(rng.sample(range(20, RECIPIENTS - 20), 10))
    with server_process(tmp_path, "--no-starttls") as server:
        root = _project(tmp_path / "site", server.port)
        kills = 0
        for moment in moments:
            proc = _start(root)
            _wait_for(server, proc, moment)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=30)
        status = _finish(root)
        counts = _counts(server)
    expected = {f"reader{i:04d}@example.org" for i in range(RECIPIENTS)}
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:10]}"
    duplicates = sum(n - 1 for n in counts.values())
    print(f"\n{kills} SIGKILLs, {duplicates} duplicate deliveries")
    # The tolerated in-flight window: accepted by the server, not yet committed to the ledger.
    assert duplicates <= CONCURRENCY * kills, (duplicates, kills)
    assert kills >= 8  # the moments really interrupted running sends
    assert f"{RECIPIENTS} recipients = {RECIPIENTS} sent + 0 failed + 0 pending" in status


@pytest.mark.slow
def test_sigterm_stops_gracefully_with_no_duplicates(tmp_path: Path) -> None:
    rng = random.Random(SEED + 1)
    moments = sorted(rng.sample(range(50, RECIPIENTS - 50), 3))
    with server_process(tmp_path, "--no-starttls") as server:
        root = _project(tmp_path / "site", server.port)
        for moment in moments:
            proc = _start(root)
            _wait_for(server, proc, moment)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
            assert b"Traceback" not in err
        status = _finish(root)
        counts = _counts(server)
    assert len(counts) == RECIPIENTS
    assert max(counts.values()) == 1, [r for r, n in counts.items() if n > 1][:10]
    assert f"{RECIPIENTS} recipients = {RECIPIENTS} sent" in status
