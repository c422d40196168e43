"""`newsletter schedule` in real processes: kill -9 and restart, SIGTERM, a second scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.config import Config
from newsletter.deliver.send import open_state
from newsletter.state import subscribers
from newsletter.state.lease import Lease
from newsletter.state.ledger import Ledger
from newsletter.state.schema import deliveries
from tests.conftest import BASE_CONFIG, MakeProject, issue
from tests.smtpd_fixture import SMTPServer

REPO = Path(__file__).resolve().parents[2]
# The lead registers the command in cli.py; importing the module here works either way.
CLI = "import newsletter.cli_schedule; from newsletter.cli import main; main()"
SECRET = "schedule-e2e-secret-0123456789"
FIRE_PLUS_1MIN = "2024-06-03T08:01:00+08:00"  # just after Monday's 08:00 fire (Asia/Shanghai)


def wait_for(condition: Callable[[], object], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def smtp_project(make_project: MakeProject, port: int, emails: list[str]) -> Config:
    """A week with one issue, SMTP at ``port`` at 4 messages/s over one connection."""
    cfg = make_project(
        files={"issues/a.md": issue("Paper", "2024-05-29T10:00:00+08:00")},
        extra_config=f"""
[schedule]
cron = "0 8 * * mon"
misfire_grace = "6h"

[sender]
kind = "smtp"
rate = "4/s"
concurrency = 1

[sender.smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = 1
""",
    )
    with open_state(cfg) as db:
        for email in emails:
            subscribers.add(db, email)
    return cfg


def schedule(
    cfg: Config, *args: str, now: str = FIRE_PLUS_1MIN, log: Path | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "NEWSLETTER_NOW": now}
    out = log.open("w") if log else subprocess.PIPE
    try:
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "-C", str(cfg.root), "schedule", *args],
            env=env,
            stdout=out,
            stderr=out,
            text=True,
            cwd=REPO,
        )
    finally:
        if log:
            out.close()  # type: ignore[union-attr]


@pytest.fixture
def smtpd_process(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """The SMTP fixture in its own process: (port, record file of accepted recipients)."""
    port_file, record = tmp_path / "smtpd.port", tmp_path / "smtpd.record"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.smtpd_fixture",
            "--port-file",
            str(port_file),
            "--record-file",
            str(record),
            "--no-starttls",
        ],
        cwd=REPO,
    )
    try:
        wait_for(lambda: port_file.exists() or proc.poll() is not None, 30)
        assert proc.poll() is None, "the SMTP fixture did not start"
        yield int(port_file.read_text()), record
    finally:
        proc.terminate()
        proc.wait(10)


def accepted(record: Path) -> list[str]:
    text = record.read_text() if record.exists() else ""
    return [line.split("\t")[1] for line in text.splitlines()]


def ledger_sent(cfg: Config, edition: int) -> set[str]:
    with open_state(cfg) as db, db.connect() as conn:
        return set(
            conn.execute(
                select(deliveries.c.email).where(
                    deliveries.c.edition == edition, deliveries.c.status == "sent"
                )
            ).scalars()
        )


@pytest.mark.slow
def test_restart_after_kill_resumes_without_duplicates(
    make_project: MakeProject, smtpd_process: tuple[int, Path]
) -> None:
    port, record = smtpd_process
    emails = [f"reader{i:02d}@example.org" for i in range(20)]
    cfg = smtp_project(make_project, port, emails)

    first = schedule(cfg, "--once")
    try:
        wait_for(lambda: len(accepted(record)) >= 6 or first.poll() is not None)
        assert first.poll() is None, first.communicate()
    finally:
        first.kill()  # SIGKILL: no handler runs, the lease and the fire stay behind
        first.communicate()
    at_kill = accepted(record)
    recorded = ledger_sent(cfg, 1)
    # What the ledger calls sent the server really accepted; at most the one message in
    # flight (accepted, its record not yet committed) can be unknown to the ledger.
    assert recorded <= set(at_kill) and len(at_kill) < len(emails)
    in_flight = set(at_kill) - recorded
    assert len(in_flight) <= 1 and len(at_kill) == len(set(at_kill))

    second = schedule(cfg, "--once")
    _, log = second.communicate(timeout=60)
    assert second.returncode == 0, log
    assert "took over the scheduler lease" in log
    assert "resuming its interrupted send" in log
    counts = Counter(accepted(record))
    assert set(counts) == set(emails)
    assert {e for e, n in counts.items() if n > 1} == in_flight
    assert max(counts.values()) <= 2
    with open_state(cfg) as db:
        summary = Ledger(db).summary(1)
    assert (summary.sent, summary.pending) == (20, 0)


def test_sigterm_finishes_the_message_in_flight_and_a_rerun_completes(
    make_project: MakeProject, make_smtp_server: Callable[..., SMTPServer]
) -> None:
    server = make_smtp_server(starttls=False)
    emails = [f"member{i:02d}@example.org" for i in range(12)]
    cfg = smtp_project(make_project, server.port, emails)

    proc = schedule(cfg, "--once")
    try:
        wait_for(lambda: server.accepted >= 5 or proc.poll() is not None)
        proc.send_signal(signal.SIGTERM)
        _, log = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, log
    assert "the scheduled run interrupted: stopped by signal" in log
    # A graceful stop is exact: every accepted message is in the ledger, nothing else.
    assert ledger_sent(cfg, 1) == set(server.recipients)
    assert 5 <= len(server.recipients) < len(emails)

    rerun = schedule(cfg, "--once")
    _, log = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, log
    assert Counter(server.recipients) == Counter(emails)


def test_second_scheduler_is_refused_and_sigterm_stops_the_first(
    make_project: MakeProject, tmp_path: Path
) -> None:
    cfg = make_project(
        files={"issues/a.md": issue("Paper", "2024-05-29T10:00:00+08:00")},
        config=BASE_CONFIG,
        extra_config='[schedule]\ncron = "0 8 * * mon"\n',
    )
    now = "2024-06-01T12:00:00+08:00"  # a Saturday: nothing due, the scheduler waits
    first_log = tmp_path / "first.log"
    first = schedule(cfg, now=now, log=first_log)
    try:
        wait_for(
            lambda: "waiting; next fire" in first_log.read_text() or first.poll() is not None, 30
        )
        assert first.poll() is None, first_log.read_text()
        for args in (("--once",), ()):
            other = schedule(cfg, *args, now=now)
            _, log = other.communicate(timeout=30)
            assert other.returncode == 1, log
            assert (
                f"another scheduler is running against {cfg.state_dir / 'state.db'}: "
                f"{os.uname().nodename}:{first.pid} holds the lease" in log
            )
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0, first_log.read_text()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert "scheduler stopped" in first_log.read_text()
    with open_state(cfg) as db:
        assert Lease(db, "scheduler").current() is None
