"""One scheduled run end to end, the APScheduler glue and the `schedule` command."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from newsletter import clock
from newsletter.config import Config, load_config
from newsletter.deliver.send import open_state, plan_send, send_edition
from newsletter.errors import PublishError, ScheduleError
from newsletter.pipeline import load_and_group
from newsletter.schedule.firelog import FireLog, LeaseKeeper
from newsletter.schedule.runner import (
    current_scheduler,
    run_due,
    run_forever,
    run_publish_command,
)
from newsletter.senders.base import Message, Result
from newsletter.senders.memory import MemorySender
from newsletter.state import subscribers
from newsletter.state.lease import Lease
from newsletter.state.ledger import Ledger
from tests.conftest import BASE_CONFIG, MakeProject, issue
from tests.schedule import (
    EMAILS,
    ENV,
    SCHEDULE,
    W22,
    W23,
    W24,
    edition_number,
    publish,
    recipients,
    sh,
)


# ---- one run ----------------------------------------------------------------------------------
def run(cfg: Config, sender: MemorySender, **kw: object):  # type: ignore[no-untyped-def]
    return run_due(cfg, sender=sender, environ=ENV, **kw)  # type: ignore[arg-type]


def test_fire_at_local_time_across_a_dst_change(project, at) -> None:  # type: ignore[no-untyped-def]
    berlin = BASE_CONFIG.replace('timezone = "Asia/Shanghai"', 'timezone = "Europe/Berlin"')
    cfg = project(
        {
            "issues/a.md": issue("March", "2024-03-20T10:00:00+01:00"),
            "issues/b.md": issue("Easter", "2024-03-27T10:00:00+01:00"),
        },
        config=berlin,
    )
    sender = MemorySender()
    at(datetime(2024, 3, 25, 7, 0, 30, tzinfo=UTC))  # 08:00:30 CET
    assert run(cfg, sender).status == "sent"
    at(datetime(2024, 4, 1, 5, 59, tzinfo=UTC))  # 07:59 CEST (06:59 in winter time)
    assert run(cfg, sender).status == "idle"
    at(datetime(2024, 4, 1, 6, 0, 30, tzinfo=UTC))  # 08:00:30 CEST
    summary = run(cfg, sender)
    assert (summary.status, summary.decision.fire.isoformat()) == (  # type: ignore[union-attr]
        "sent",
        "2024-04-01T08:00:00+02:00",
    )
    keys = {e.number: e.key for e in load_and_group(cfg, now=clock.now()).editions}
    assert sorted((keys[n], r) for n, r in recipients(sender)) == sorted(
        [("2024-W12", e) for e in EMAILS] + [("2024-W13", e) for e in EMAILS]
    )


def test_catch_up_within_grace_sends_once(project, at, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/b.md": W23})
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    assert run(cfg, sender).status == "sent"
    caplog.set_level(logging.INFO, "newsletter.schedule")
    at(sh(11, 10))  # the process was down at 08:00
    summary = run(cfg, sender)
    assert (summary.status, summary.sent) == ("sent", 6)
    assert "fire Mon 2024-06-10 08:00 CST: running 3 h late" in caplog.text
    assert "'Test Digest #2' (1 issue) is due" in caplog.text
    at(sh(11, 10, minute=5))
    assert run(cfg, sender).status == "idle"
    counts = recipients(sender)
    assert set(counts.values()) == {1} and len(counts) == 12


def test_beyond_grace_skips_and_never_sends_late(project, at, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/b.md": W23})
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    run(cfg, sender)
    caplog.set_level(logging.INFO, "newsletter.schedule")
    at(sh(15, 10))  # 7 h late, grace 6 h
    summary = run(cfg, sender)
    assert summary.status == "skipped" and summary.sent == 0
    assert (
        "fire Mon 2024-06-10 08:00 CST was missed by 7 h (more than misfire_grace 6 h): "
        "skipped, not sent late" in caplog.text
    )
    assert (
        "edition 2 was not sent; send it by hand if you still want it out: "
        "newsletter send 2" in caplog.text
    )
    at(sh(15, 10, minute=20))
    assert run(cfg, sender).status == "idle"
    at(sh(8, 17, minute=1))  # the next fire: W24 is empty, and W23 stays unsent
    nxt = run(cfg, sender)
    assert nxt.status == "nothing" and "2024-06-10 – 2024-06-16" in nxt.reason
    assert {n for n, _ in recipients(sender)} == {1}


def test_empty_week_builds_and_publishes_but_sends_nothing(project, at, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "publish.py"
    script.write_text(
        "import os, pathlib\npathlib.Path('published.txt').write_text("
        "repr((os.environ['NEWSLETTER_EDITION'], pathlib.Path("
        "os.environ['NEWSLETTER_OUT'], 'feed.xml').is_file())))\n"
    )
    command = shlex.join([sys.executable, str(script)])
    cfg = project({"issues/a.md": W22}, extra=publish(command))
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    assert run(cfg, sender).edition == 1
    assert (cfg.root / "published.txt").read_text() == "('1', True)"
    at(sh(8, 10, minute=1))
    summary = run(cfg, sender)
    assert (summary.status, summary.published, summary.sent) == ("nothing", True, 0)
    assert (cfg.root / "published.txt").read_text() == "('', True)"
    assert len(sender.sent) == 6


def test_two_editions_closed_in_one_window_only_the_latest_is_sent(project, at, caplog) -> None:  # type: ignore[no-untyped-def]
    long_grace = SCHEDULE.replace('"6h"', '"8d"')
    cfg = project({"issues/a.md": W22, "issues/b.md": W23, "issues/c.md": W24}, extra=long_grace)
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    run(cfg, sender)
    caplog.set_level(logging.INFO, "newsletter.schedule")
    at(sh(9, 17))  # down from 06-04 to 06-17 09:00: W23 and W24 both closed meanwhile
    summary = run(cfg, sender)
    w24 = edition_number(cfg, clock.now(), "2024-W24")
    assert (summary.status, summary.edition) == ("sent", w24)
    assert "1 earlier fire(s) folded into this one" in caplog.text
    assert (
        "edition 2 'Test Digest #2' also closed since the previous fire but only the "
        "latest is sent automatically" in caplog.text
    )
    assert {n for n, _ in recipients(sender)} == {1, w24}


def test_already_sent_edition_is_never_sent_again(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22})
    by_hand = MemorySender()
    at(sh(7, 3))
    with open_state(cfg) as db:  # `newsletter send 1 --yes` an hour before the fire
        send_edition(cfg, plan_send(cfg, 1, db=db), db=db, sender=by_hand, environ=ENV)
    with open_state(cfg) as db:
        subscribers.add(db, "late-joiner@example.org")
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    summary = run(cfg, sender)
    assert summary.status == "nothing" and "was already sent" in summary.reason
    assert sender.sent == [] and len(by_hand.sent) == 6


def test_second_scheduler_is_refused(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22})
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    with open_state(cfg) as db, LeaseKeeper(db, holder="other-host:4242"):
        with pytest.raises(
            ScheduleError,
            match=r"another scheduler is running .* "
            r"other-host:4242 holds the lease",
        ):
            run(cfg, sender)
        assert sender.sent == []
        assert FireLog(db).recent() == []
    assert run(cfg, sender).status == "sent"
    with open_state(cfg) as db:
        assert Lease(db, "scheduler").current() is None  # released after the run


def test_lease_of_a_dead_local_process_is_taken_over(project, at, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22})
    at(sh(8, 3, minute=1))
    host = socket.gethostname()
    with open_state(cfg) as db:
        Lease(db, "scheduler", f"{host}:{os.getppid()}").acquire()  # alive: refused
        with pytest.raises(ScheduleError, match="another scheduler"):
            run(cfg, MemorySender())
        Lease(db, "scheduler", f"{host}:{os.getppid()}").release()
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        Lease(db, "scheduler", f"{host}:{dead}").acquire()
    assert run(cfg, MemorySender()).status == "sent"
    assert f"took over the scheduler lease of {host}:{dead}" in caplog.text


def test_failing_publish_command_stops_before_sending_and_is_retried(project, at) -> None:  # type: ignore[no-untyped-def]
    fail = shlex.join(
        [sys.executable, "-c", "import sys; print('rsync: connection refused'); sys.exit(23)"]
    )
    cfg = project({"issues/a.md": W22}, extra=publish(fail))
    sender = MemorySender()
    at(sh(8, 3, minute=1))
    summary = run(cfg, sender)
    assert summary.status == "failed" and sender.sent == []
    assert "exit code 23: rsync: connection refused" in summary.reason
    with open_state(cfg) as db:
        assert FireLog(db).get(sh(8, 3)).status == "failed"  # type: ignore[union-attr]
    (cfg.root / "config.toml").write_text(
        (cfg.root / "config.toml").read_text().replace("sys.exit(23)", "sys.exit(0)")
    )
    fixed = load_config(cfg.root, environ={})
    at(sh(9, 3))  # within the grace: the next `--once` tries again
    assert run(fixed, sender).status == "sent"
    assert len(sender.sent) == 6


def test_publish_command_timeout_and_missing_program(make_project: MakeProject) -> None:
    slow = shlex.join([sys.executable, "-c", "import time; time.sleep(30)"])
    cfg = make_project(extra_config=publish(slow, schedule=""))
    started = time.monotonic()
    with pytest.raises(PublishError, match=r"timed out after 0\.3 s"):
        run_publish_command(cfg, edition=None, timeout=0.3)
    assert time.monotonic() - started < 10
    cfg = make_project(extra_config="[publish]\ncommand = 'no-such-program-xyz --go'\n")
    with pytest.raises(PublishError, match="cannot run 'no-such-program-xyz'"):
        run_publish_command(cfg, edition=None)
    cfg = make_project(extra_config='[publish]\ncommand = "rsync \'public/"\n')
    with pytest.raises(PublishError, match=r"cannot parse .*No closing quotation"):
        run_publish_command(cfg, edition=None)


def stop_after(n: int, stop: threading.Event) -> Callable[[Message], Result | None]:
    """A MemorySender hook: SIGTERM arrives while the n-th message is in flight."""
    seen: list[str] = []

    def hook(msg: Message) -> Result | None:
        seen.append(msg.recipient)
        if len(seen) == n:
            stop.set()
        return None

    return hook


def test_interrupted_send_resumes_once_within_grace(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22})
    stop = threading.Event()
    first = MemorySender(fail=stop_after(2, stop))
    at(sh(13, 3))  # a late catch-up run, 5 h after the fire
    summary = run(cfg, first, stop=stop)
    assert (summary.status, summary.sent, summary.pending) == ("interrupted", 2, 4)
    with open_state(cfg) as db:
        record = FireLog(db).get(sh(8, 3))
        assert record is not None and (record.status, record.edition) == ("interrupted", 1)
    rest = MemorySender()
    at(sh(15, 3))  # 7 h after the fire but 2 h after it was last sending: resume
    again = run(cfg, rest)
    assert (again.status, again.decision.resuming, again.sent) == ("sent", True, 4)
    assert sorted(first.recipients + rest.recipients) == sorted(EMAILS)


def test_interrupted_send_long_ago_is_not_resumed_by_surprise(project, at, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22})
    stop = threading.Event()
    at(sh(8, 3, minute=1))
    run(cfg, MemorySender(fail=stop_after(3, stop)), stop=stop)
    late = MemorySender()
    at(sh(20, 3))  # 12 h later
    assert run(cfg, late).status == "skipped"
    assert late.sent == []
    assert (
        "the interrupted send of edition 1 (3 of 6 sent) is not resumed this late; finish "
        "it by hand: newsletter send 1 --yes" in caplog.text
    )
    at(sh(8, 10, minute=1))
    assert run(cfg, late).status == "nothing"
    with open_state(cfg) as db:
        assert Ledger(db).summary(1).pending == 3
        assert FireLog(db).get(sh(8, 3)).status == "skipped"  # type: ignore[union-attr]


def test_unfinished_older_fire_is_abandoned_loudly_once(project, at, caplog) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/b.md": W23})
    stop = threading.Event()
    at(sh(8, 3, minute=1))
    run(cfg, MemorySender(fail=stop_after(2, stop)), stop=stop)
    sender = MemorySender()
    at(sh(8, 10, minute=1))  # down all week; the next fire sends the next edition
    summary = run(cfg, sender)
    assert (summary.status, summary.edition) == ("sent", 2)
    warning = (
        "the run of fire Mon 2024-06-03 08:00 CST did not finish (interrupted, stopped by signal"
    )
    assert warning in caplog.text
    assert (
        "a later fire does not resume edition 1: finish it with `newsletter send 1 --yes`"
        in caplog.text
    )
    caplog.clear()
    at(sh(8, 17, minute=1))
    run(cfg, sender)
    assert warning not in caplog.text  # said once
    with open_state(cfg) as db:
        assert FireLog(db).get(sh(8, 3)).status == "abandoned"  # type: ignore[union-attr]
        assert Ledger(db).summary(1).pending == 4  # nobody got edition 1 twice or late


# ---- the foreground scheduler (APScheduler glue) ----------------------------------------------
def wait_for(condition: Callable[[], object], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def test_foreground_scheduler_job_fires_and_stops_cleanly(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/b.md": W23})
    sender = MemorySender()
    at(sh(12, 1))  # between fires: the catch-up at start finds nothing
    stop = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            run_forever(cfg, stop=stop, environ=ENV, sender_factory=lambda: sender)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        wait_for(lambda: (s := current_scheduler()) is not None and s.running)
        scheduler = current_scheduler()
        assert scheduler is not None
        job = scheduler.get_job("newsletter-send")
        assert (
            job.func_ref,
            job.args,
            job.misfire_grace_time,
            job.coalesce,
            job.max_instances,
        ) == ("newsletter.schedule.runner:scheduled_job", (str(cfg.root),), 21600, True, 1)
        # APScheduler computes the wake-up from the real clock: a Monday, 08:00 local time.
        assert job.next_run_time.strftime("%a %H:%M %Z") == "Mon 08:00 CST"
        with open_state(cfg) as db, db.connect() as conn:  # the job store is the state db
            assert conn.exec_driver_sql("SELECT id FROM apscheduler_jobs").scalars().all() == [
                "newsletter-send"
            ]
        at(sh(8, 3, minute=0) + timedelta(seconds=3))
        scheduler.modify_job("newsletter-send", next_run_time=datetime.now(UTC))  # fire now

        def settled() -> bool:
            with open_state(cfg) as db:
                rec = FireLog(db).get(sh(8, 3))
            return rec is not None and rec.status == "sent"

        wait_for(settled)
    finally:
        stop.set()
        thread.join(15)
    assert not thread.is_alive() and errors == []
    assert sorted(sender.recipients) == sorted(EMAILS)
    with open_state(cfg) as db:
        assert Lease(db, "scheduler").current() is None


def test_foreground_scheduler_catches_up_at_start_and_refuses_without_cron(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22})
    at(sh(9, 3))
    stop = threading.Event()
    # SIGTERM during the catch-up's last message: it is finished, then the process exits.
    sender = MemorySender(fail=stop_after(6, stop))
    run_forever(cfg, stop=stop, environ=ENV, sender_factory=lambda: sender)
    assert sorted(sender.recipients) == sorted(EMAILS)
    with open_state(cfg) as db:
        assert FireLog(db).get(sh(8, 3)).status == "sent"  # type: ignore[union-attr]
    no_cron = load_config(cfg.root, environ={"NEWSLETTER_SCHEDULE__CRON": '""'})
    with pytest.raises(ScheduleError, match=r"\[schedule\] cron is not set"):
        run_forever(no_cron, stop=threading.Event())


# ---- the command ------------------------------------------------------------------------------
def invoke(cfg: Config, *args: str):  # type: ignore[no-untyped-def]
    import newsletter.cli_schedule  # noqa: F401 - registers the command
    from newsletter.cli import cli

    return CliRunner().invoke(cli, ["-C", str(cfg.root), "schedule", *args])


def test_cli_list_shows_local_fire_times_and_editions(project, at) -> None:  # type: ignore[no-untyped-def]
    cfg = project({"issues/a.md": W22, "issues/b.md": W23})
    at(sh(12, 1))
    result = invoke(cfg, "--list", "-n", "3")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "schedule: '0 8 * * mon' in Asia/Shanghai, misfire_grace 6 h",
        "last fire: none yet",
        "next fire times:",
        "  Mon 2024-06-03 08:00 CST  edition 1 'Test Digest #1' (1 issue)",
        "  Mon 2024-06-10 08:00 CST  edition 2 'Test Digest #2' (1 issue)",
        "  Mon 2024-06-17 08:00 CST  the week 2024-06-10 – 2024-06-16 has no published "
        "issues: nothing to send",
    ]


def test_cli_once_runs_what_is_due_and_exits(project, at, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_SECRET", ENV["NEWSLETTER_SECRET"])
    cfg = project({"issues/a.md": W22})
    at(sh(8, 3, minute=2))
    result = invoke(cfg, "--once")
    assert result.exit_code == 0, result.output
    assert "INFO send edition 1 via outbox: 6 enqueued, 6 sent" in result.stderr
    assert len(list((cfg.root / "outbox" / "new").iterdir())) == 6
    again = invoke(cfg, "--once", "--quiet")
    assert again.exit_code == 0 and again.stderr == ""
    listed = invoke(cfg, "--list", "-n", "1")
    assert "last fire: Mon 2024-06-03 08:00 CST — sent (edition 1)" in listed.output
    assert invoke(cfg, "--once", "--list").exit_code == 2


def test_cli_once_failure_exits_1(project, at, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("NEWSLETTER_SECRET", ENV["NEWSLETTER_SECRET"])
    fail = shlex.join([sys.executable, "-c", "raise SystemExit(4)"])
    cfg = project({"issues/a.md": W22}, extra=publish(fail))
    at(sh(8, 3, minute=2))
    result = invoke(cfg, "--once")
    assert result.exit_code == 1
    assert "the scheduled run failed: [publish] command failed with exit code 4" in result.stderr
    assert not (cfg.root / "outbox").exists()
