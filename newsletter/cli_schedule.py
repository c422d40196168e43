"""CLI command `schedule`: send each edition on time, in the foreground or once from cron."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import click

from newsletter.cli import _config, cli, handle_errors
from newsletter.errors import ScheduleError

_LOGGERS = ("newsletter.schedule", "apscheduler")


@contextmanager
def _log_to_stderr(quiet: bool) -> Iterator[None]:
    """One line per step on stderr (journald and cron mail keep them); removed afterwards."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    saved: list[tuple[logging.Logger, int]] = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.addHandler(handler)
        # APScheduler's INFO lines repeat ours; its warnings (a missed run) are worth seeing.
        logger.setLevel(logging.WARNING if quiet or name == "apscheduler" else logging.INFO)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)


@cli.command()
@click.option(
    "--once",
    is_flag=True,
    help="Do what is due now (build, publish, send) and exit: for cron or a systemd timer.",
)
@click.option(
    "--list",
    "list_",
    is_flag=True,
    help="Show the next fire times in local time and what each would send.",
)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(1, 100),
    default=5,
    show_default=True,
    help="With --list: how many fire times.",
)
@click.option("-q", "--quiet", is_flag=True, help="Log only warnings and errors.")
@click.pass_context
@handle_errors
def schedule(ctx: click.Context, once: bool, list_: bool, count: int, quiet: bool) -> None:
    """Build, publish and send each edition on time by [schedule] cron, exactly once.

    Without options it runs in the foreground until SIGTERM or Ctrl-C (which let the
    message in flight finish); a restart resumes an interrupted send. Fires missed by more
    than [schedule] misfire_grace are skipped, never sent late. Only one scheduler may run
    per state database.

    \b
    Examples:
      newsletter schedule            # foreground (systemd service, container)
      newsletter schedule --once     # from cron / a systemd timer, e.g. every 15 minutes
      newsletter schedule --list     # next fire times and the edition each would send
    """
    if once and list_:
        raise click.UsageError("--once and --list cannot be used together")
    config = _config(ctx)
    if list_:
        _print_upcoming(config, count)
        return
    from newsletter.cli_delivery import graceful_stop

    with _log_to_stderr(quiet), graceful_stop() as stop:
        if once:
            from newsletter.schedule.runner import run_due

            summary = run_due(config, stop=stop)
            if not summary.ok:
                raise ScheduleError(
                    f"the scheduled run {summary.status}: {summary.reason}",
                    hint="run `newsletter schedule --once` again within misfire_grace to "
                    "retry; the ledger resumes a send where it stopped",
                )
        else:
            from newsletter.schedule.runner import run_forever

            run_forever(config, stop=stop)


def _print_upcoming(config: Any, count: int) -> None:
    from newsletter import clock
    from newsletter.deliver.send import open_state
    from newsletter.schedule.decisions import human, local_time, plural, require_cron, upcoming
    from newsletter.schedule.firelog import FireLog
    from newsletter.state.ledger import Ledger

    cron = require_cron(config)
    grace = human(timedelta(seconds=config.schedule.misfire_grace))
    click.echo(f"schedule: {cron!r} in {config.newsletter.timezone}, misfire_grace {grace}")
    db = open_state(config)
    try:
        fires = FireLog(db, create=False)
        last = fires.recent(1) if fires.exists() else []
        if last:
            rec = last[0]
            what = f"edition {rec.edition}" if rec.edition is not None else "no edition"
            click.echo(f"last fire: {local_time(rec.fire, config)} — {rec.status} ({what})")
        else:
            click.echo("last fire: none yet")
        click.echo("next fire times:")
        for at, pick in upcoming(config, Ledger(db), clock.now(), count):
            if pick.edition is not None:
                e = pick.edition
                what = f"edition {e.number} {e.title!r} ({plural(len(e.issues), 'issue')})"
                if pick.resume:
                    what += ", resuming its interrupted send"
            else:
                what = pick.reason
            click.echo(f"  {local_time(at, config)}  {what}")
    finally:
        db.close()
