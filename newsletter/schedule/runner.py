"""Running the scheduler: one run (``run_due``), the publish command, and the APScheduler glue."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from newsletter import clock
from newsletter.config import Config
from newsletter.errors import NewsletterError, PublishError, ScheduleError
from newsletter.models import Edition
from newsletter.schedule.decisions import (
    Decision,
    human,
    local_time,
    missed_run,
    pick_edition,
    plural,
    previous_fire,
    require_cron,
    resume_decision,
)
from newsletter.schedule.firelog import FireLog, LeaseKeeper

if TYPE_CHECKING:
    from apscheduler.schedulers.blocking import BlockingScheduler

    from newsletter.pipeline import BuildReport
    from newsletter.senders.base import Sender
    from newsletter.state.db import Database

log = logging.getLogger("newsletter.schedule")

PUBLISH_TIMEOUT = 900.0  # seconds the [publish] command may take
JOB_ID = "newsletter-send"
JOB_FUNC = "newsletter.schedule.runner:scheduled_job"  # a reference: the job store pickles it
JOBS_TABLE = "apscheduler_jobs"


# ---- one run ----------------------------------------------------------------------------------
@dataclass
class RunSummary:
    """What one ``run_due`` did; ``status`` is idle, skipped, nothing, sent, failed, interrupted."""

    decision: Decision
    status: str = "idle"
    edition: int | None = None
    reason: str = ""
    build: BuildReport | None = None
    published: bool = False
    sent: int = 0  # messages accepted in this run
    failed: int = 0
    pending: int = 0  # left in the ledger for a resume

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "interrupted")


def run_due(
    config: Config,
    *,
    now: datetime | None = None,
    sender: Sender | None = None,
    environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    lease: LeaseKeeper | None = None,
) -> RunSummary:
    """Do whatever is due at ``now``: nothing, skip a missed fire, or build, publish and send.

    Takes the scheduler lease (``ScheduleError`` if another scheduler holds it) unless the
    caller already holds one. ``stop`` (SIGTERM) lets the message in flight finish; the fire
    is then left unsettled so the next run within the grace resumes it through the ledger.
    """
    from newsletter.deliver.send import open_state

    cron, tz, grace = require_cron(config), config.newsletter.tz, config.schedule.misfire_grace
    now = now or clock.now()
    stop = stop or threading.Event()
    db = open_state(config)
    try:
        with contextlib.ExitStack() as stack:
            keeper = lease or stack.enter_context(LeaseKeeper(db, stop=stop))
            fires = FireLog(db)
            decision = missed_run(fires.last_settled(), now, cron, grace, tz=tz)
            if decision.fire is not None:
                record = fires.get(decision.fire)
                active = (
                    record.updated_at
                    if record and record.status in ("running", "interrupted")
                    else None
                )
                decision = resume_decision(
                    decision, cron=cron, tz=tz, active_at=active, grace=grace
                )
            summary = RunSummary(decision)
            _log_decision(config, decision)
            fire = decision.fire
            if fire is None:
                return summary
            fires.abandon_before(fire, config)
            if decision.action == "skip":
                summary.status = "skipped"
                _log_skipped_edition(config, db, fire, now)
                fires.finish(fire, "skipped", f"missed by {human(decision.late)}")
                return summary
            fires.start(fire)
            keeper.beat = lambda: fires.touch(fire)
            try:
                _fire(
                    config,
                    db,
                    summary,
                    fires,
                    fire,
                    now=now,
                    sender=sender,
                    environ=environ,
                    stop=stop,
                    keeper=keeper,
                )
            except NewsletterError as exc:
                summary.status, summary.reason = "failed", exc.message
                log.error("run failed: %s", "; ".join(exc.lines()))
            except BaseException:
                fires.finish(fire, "failed", "internal error (see the traceback)")
                raise
            finally:
                keeper.beat = None
            fires.finish(fire, summary.status, summary.reason, summary.edition)
            log.info("done: %s", _outcome(summary))
            return summary
    finally:
        db.close()


def _fire(
    config: Config,
    db: Database,
    summary: RunSummary,
    fires: FireLog,
    fire: datetime,
    *,
    now: datetime,
    sender: Sender | None,
    environ: Mapping[str, str] | None,
    stop: threading.Event,
    keeper: LeaseKeeper,
) -> None:
    """One fire: pick the edition, build, publish, then send it (or say why not)."""
    from newsletter.pipeline import load_and_group
    from newsletter.state.ledger import Ledger

    pick = pick_edition(
        config,
        load_and_group(config, now=now),
        Ledger(db),
        since=summary.decision.since,
        until=fire,
    )
    log.info("%s", pick.reason)
    for old in pick.passed_over:
        log.warning(
            "edition %d %r also closed since the previous fire but only the latest is "
            "sent automatically; send it by hand if you want: newsletter send %d",
            old.number,
            old.title,
            old.number,
        )
    if pick.edition is not None:
        summary.edition = pick.edition.number
        fires.start(fire, pick.edition.number)
    _build_and_publish(config, summary, now=now, environ=environ)
    if pick.edition is None:
        summary.status, summary.reason = "nothing", pick.reason
    elif stop.is_set():
        summary.status, summary.reason = "interrupted", "stopped before sending"
    else:
        _send(
            config,
            db,
            summary,
            pick.edition,
            now=now,
            sender=sender,
            environ=environ,
            stop=stop,
            keeper=keeper,
        )


def _build_and_publish(
    config: Config, summary: RunSummary, *, now: datetime, environ: Mapping[str, str] | None
) -> None:
    from newsletter.pipeline import build

    report = summary.build = build(config, now=now)
    log.info(
        "build: %s, %d rendered, %d unchanged → %s",
        plural(report.editions, "edition"),
        len(report.rendered),
        report.reused,
        report.out,
    )
    if config.publish.command:
        took = run_publish_command(config, edition=summary.edition, environ=environ)
        summary.published = True
        log.info("publish: `%s` succeeded in %.1f s", config.publish.command, took)


def _send(
    config: Config,
    db: Database,
    summary: RunSummary,
    edition: Edition,
    *,
    now: datetime,
    sender: Sender | None,
    environ: Mapping[str, str] | None,
    stop: threading.Event,
    keeper: LeaseKeeper,
) -> None:
    """Send through `newsletter send`'s path: the ledger skips whoever already has it."""
    from newsletter.deliver.send import plan_send, send_edition
    from newsletter.state.ledger import Ledger

    plan = plan_send(config, edition.number, db=db, now=now)
    for finding in plan.check.findings:
        log.warning("check: %s", finding)
    if plan.edition.key != edition.key:  # numbering must not move between pick and send
        raise ScheduleError(
            f"edition {edition.number} changed during the run ({edition.key} → {plan.edition.key})"
        )
    ledger = Ledger(db)
    ledger.mark_started(edition.number, sender.name if sender else plan.sender)
    result = send_edition(config, plan, db=db, sender=sender, environ=environ, stop=stop)
    totals = result.summary
    summary.sent, summary.failed = result.run.sent, result.run.failed
    summary.pending = totals.pending if totals else 0
    if totals is not None:
        log.info(
            "send edition %d via %s: %d enqueued, %d sent and %d failed in this run; "
            "ledger: %d recipients = %d sent + %d failed + %d pending + %d suppressed",
            edition.number,
            result.sender,
            result.enqueued,
            result.run.sent,
            result.run.failed,
            totals.total,
            totals.sent,
            totals.failed,
            totals.pending,
            totals.suppressed,
        )
    if totals is not None and not totals.pending:  # settled, even if SIGTERM came at the end
        ledger.mark_finished(edition.number)
        summary.status = "sent"
    elif result.run.stopped:
        summary.status = "interrupted" if stop.is_set() and not keeper.lost.is_set() else "failed"
        summary.reason = result.run.stopped
    else:
        summary.status, summary.reason = "failed", f"{summary.pending} recipients still pending"


def _log_decision(config: Config, d: Decision) -> None:
    grace = human(timedelta(seconds=config.schedule.misfire_grace))
    for fire in d.missed[:5]:
        if d.action != "skip" or fire != d.fire:
            log.warning(
                "fire %s was missed by %s (more than misfire_grace %s): skipped",
                local_time(fire, config),
                human(d.now - fire),
                grace,
            )
    if len(d.missed) > 5:
        log.warning(
            "… and %s more missed fires",
            len(d.missed) - 5 if len(d.missed) < 100 else "at least 95",
        )
    nxt = f"next fire {local_time(d.next_fire, config)}" if d.next_fire else "no next fire"
    if d.fire is None:
        log.info("nothing due; %s", nxt)
    elif d.action == "skip":
        log.warning(
            "fire %s was missed by %s (more than misfire_grace %s): skipped, not sent late; %s",
            local_time(d.fire, config),
            human(d.late),
            grace,
            nxt,
        )
    else:
        how = (
            "resuming its interrupted run"
            if d.resuming
            else (f"running {human(d.late)} late" if d.late >= timedelta(minutes=1) else "due")
        )
        folded = f"; {len(d.coalesced)} earlier fire(s) folded into this one" if d.coalesced else ""
        log.info("fire %s: %s%s", local_time(d.fire, config), how, folded)


def _log_skipped_edition(config: Config, db: Database, fire: datetime, now: datetime) -> None:
    """Say which edition a skipped fire would have sent, so nobody wonders where it went."""
    from newsletter.pipeline import load_and_group
    from newsletter.state.ledger import Ledger

    ledger = Ledger(db)
    try:
        grouping = load_and_group(config, now=now)
        pick = pick_edition(
            config,
            grouping,
            ledger,
            since=previous_fire(config.schedule.cron, config.newsletter.tz, fire),
            until=fire,
        )
    except NewsletterError as exc:  # the skip stands whatever the content says
        log.warning("could not tell which edition the skipped fire would have sent: %s", exc)
        return
    if pick.edition is None:
        return
    n = pick.edition.number
    if pick.resume:
        done = ledger.summary(n)
        log.warning(
            "the interrupted send of edition %d (%d of %d sent) is not resumed this "
            "late; finish it by hand: newsletter send %d --yes",
            n,
            done.sent,
            done.total,
            n,
        )
    else:
        log.warning(
            "edition %d was not sent; send it by hand if you still want it out: newsletter send %d",
            n,
            n,
        )


def _outcome(s: RunSummary) -> str:
    if s.status == "sent":
        return f"edition {s.edition} sent ({plural(s.sent, 'message')} in this run)"
    if s.status == "nothing":
        return "nothing sent"
    if s.status == "interrupted":
        return (
            f"interrupted ({s.reason}); {s.pending} recipients pending — run again "
            "within misfire_grace to resume"
        )
    return f"{s.status}: {s.reason}"


def run_publish_command(
    config: Config,
    *,
    edition: int | None,
    environ: Mapping[str, str] | None = None,
    timeout: float = PUBLISH_TIMEOUT,
) -> float:
    """Run ``[publish] command`` in the project directory; return how long it took.

    Split with shlex and run without a shell (write ``sh -c '…'`` for pipes or ``&&``). It
    sees NEWSLETTER_OUT, NEWSLETTER_ROOT and NEWSLETTER_EDITION (empty when nothing is sent).
    A failure or a timeout raises PublishError with the end of its output: nothing is sent.
    """
    command = config.publish.command
    try:
        argv = shlex.split(command)
    except ValueError as exc:  # an unbalanced quote
        raise PublishError(
            f"[publish] command: cannot parse {command!r}: {exc}",
            hint="quote it as a POSIX shell would",
        ) from None
    if not argv:
        raise PublishError("[publish] command is blank", hint="remove it, or give a command")
    env = {
        **os.environ,
        **(environ or {}),
        "NEWSLETTER_OUT": str(config.out_dir),
        "NEWSLETTER_ROOT": str(config.root),
        "NEWSLETTER_EDITION": "" if edition is None else str(edition),
    }
    started = time.monotonic()
    try:
        # A session of its own so a timeout kills the whole tree (sh -c, rsync's ssh, …).
        proc = subprocess.Popen(
            argv,
            cwd=config.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise PublishError(
            f"[publish] command: cannot run {argv[0]!r}: {exc.strerror}",
            hint="use the full path of the program, or check PATH",
        ) from exc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PublishError(
            f"[publish] command timed out after {timeout:g} s: {command}",
            hint="nothing was sent; fix the command and run "
            "`newsletter schedule --once` within misfire_grace",
        ) from None
    text = out.decode("utf-8", "replace").strip()
    for line in text.splitlines()[-20:]:
        log.info("publish | %s", line)
    if proc.returncode:
        tail = " / ".join(text.splitlines()[-3:]) or "no output"
        raise PublishError(
            f"[publish] command failed with exit code {proc.returncode}: {tail}",
            hint="nothing was sent; fix the command and run "
            "`newsletter schedule --once` within misfire_grace",
        )
    return time.monotonic() - started


# ---- APScheduler glue -------------------------------------------------------------------------
@dataclass
class _Runtime:
    """What the running foreground scheduler shares with its job (job args must pickle)."""

    keeper: LeaseKeeper
    cron: str  # what the job's trigger was built from
    stop: threading.Event
    environ: Mapping[str, str] | None
    sender_factory: Callable[[], Sender] | None
    scheduler: BlockingScheduler | None = None
    busy: threading.Lock = field(default_factory=threading.Lock)  # held while a fire runs


_runtime: _Runtime | None = None


def current_scheduler() -> BlockingScheduler | None:
    """The running foreground scheduler of this process, if any (tests poke its job)."""
    rt = _runtime
    return rt.scheduler if rt is not None else None


def scheduled_job(root: str) -> None:
    """What APScheduler runs at each fire: reload config.toml and do what is due."""
    from newsletter.config import load_config

    rt = _runtime
    if rt is None:  # only run_forever's scheduler may run it: it holds the lease
        log.warning("fire ignored: no scheduler is running in this process")
        return
    with rt.busy:
        if rt.stop.is_set():  # submitted just before a shutdown: leave it to the next start
            return
        try:
            config = load_config(root, environ=rt.environ)
            if config.schedule.cron != rt.cron:
                log.warning(
                    "[schedule] cron changed from %r to %r: this process still wakes "
                    "up at the old times; restart `newsletter schedule` to apply it",
                    rt.cron,
                    config.schedule.cron,
                )
            run_due(
                config,
                lease=rt.keeper,
                stop=rt.stop,
                environ=rt.environ,
                sender=rt.sender_factory() if rt.sender_factory else None,
            )
        except NewsletterError as exc:  # logged; the scheduler waits for the next fire
            for line in exc.lines():
                log.error("%s", line)


def run_forever(
    config: Config,
    *,
    stop: threading.Event,
    environ: Mapping[str, str] | None = None,
    sender_factory: Callable[[], Sender] | None = None,
) -> None:
    """The foreground scheduler: catch up once, then fire by cron until ``stop`` is set."""
    global _runtime
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.blocking import BlockingScheduler

    from newsletter.deliver.send import open_state
    from newsletter.schedule.decisions import cron_trigger, next_fire

    cron, tz = require_cron(config), config.newsletter.tz
    grace = config.schedule.misfire_grace
    db = open_state(config)
    try:
        with LeaseKeeper(db, stop=stop) as keeper:
            log.info(
                "scheduler started as %s: %r in %s, misfire_grace %g s",
                keeper.holder,
                cron,
                config.newsletter.timezone,
                grace,
            )
            factory = sender_factory
            run_due(
                config,
                lease=keeper,
                stop=stop,
                environ=environ,
                sender=factory() if factory else None,
            )  # catch up after downtime
            if stop.is_set():
                return
            scheduler = BlockingScheduler(
                timezone=tz,
                executors={"default": ThreadPoolExecutor(max_workers=1)},
                jobstores={
                    "default": SQLAlchemyJobStore(url=config.database_url, tablename=JOBS_TABLE)
                },
            )
            # Explicit: APScheduler's default grace is 1 s, which turns a late wake-up into
            # no run at all. run_due applies the same grace again with the fire log.
            scheduler.add_job(
                JOB_FUNC,
                trigger=cron_trigger(cron, tz),
                args=[str(config.root)],
                id=JOB_ID,
                name="newsletter: build, publish, send",
                misfire_grace_time=max(1, int(grace)),
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
            rt = _runtime = _Runtime(keeper, cron, stop, environ, sender_factory, scheduler)
            returned = threading.Event()
            watcher = threading.Thread(
                target=_shutdown_on,
                args=(stop, scheduler, returned),
                daemon=True,
                name="schedule-stop",
            )
            watcher.start()
            upcoming = next_fire(cron, tz, clock.now())
            log.info("waiting; next fire %s", local_time(upcoming, config) if upcoming else "none")
            try:
                scheduler.start()  # blocks until _shutdown_on stops it
            finally:
                returned.set()
            with rt.busy:  # a fire in flight first finishes its messages (stop is set)
                pass
            if keeper.lost.is_set():
                raise ScheduleError("the scheduler lost its lease to another process; stopped")
            log.info("scheduler stopped")
    finally:
        _runtime = None
        db.close()


def _shutdown_on(
    stop: threading.Event, scheduler: BlockingScheduler, returned: threading.Event
) -> None:
    from apscheduler.schedulers import SchedulerNotRunningError

    stop.wait()
    while not returned.is_set():  # stop may come before start() has set the scheduler running
        try:
            scheduler.shutdown(wait=False)
            return
        except SchedulerNotRunningError:
            returned.wait(0.02)


__all__ = [
    "JOB_FUNC",
    "JOB_ID",
    "RunSummary",
    "current_scheduler",
    "run_due",
    "run_forever",
    "run_publish_command",
    "scheduled_job",
]
