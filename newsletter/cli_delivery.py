"""CLI commands for delivery: send, status and the subscriber list (thin over deliver/, state/)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import click

from newsletter.cli import _config, cli, handle_errors
from newsletter.errors import SendError


@contextmanager
def graceful_stop() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM ask the run to stop after the messages in flight; a second one kills."""
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        stop.set()
        click.echo("\nstopping after the messages in flight… (again to abort)", err=True)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Progress:
    """A one-line progress display on a terminal; a log line every few seconds otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.start = time.monotonic()
        self.last = self.start  # the first line after a short while, not for tiny runs
        self.tty = sys.stderr.isatty()

    def __call__(self, report: Any) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        done = report.sent + report.failed
        rate = done / max(now - self.start, 1e-6)
        eta = (self.total - done) / rate if rate > 0 else 0.0
        line = (
            f"sent {report.sent}/{self.total}, failed {report.failed}, "
            f"{rate:,.0f}/s, ETA {eta:,.0f} s"
        )
        if self.tty:
            click.echo(f"\r{line}   ", err=True, nl=False)
        else:
            click.echo(line, err=True)


# Edition numbers are stored as 32-bit integers; a larger one cannot exist and would overflow.
EDITION = click.IntRange(1, 2**31 - 1)


@cli.command()
@click.argument("edition", type=EDITION)
@click.option(
    "--to",
    "to",
    multiple=True,
    metavar="ADDR",
    help="Test send to this address (repeatable): subject prefixed [TEST], no ledger.",
)
@click.option("--dry-run", is_flag=True, help="Render every message and write them to the outbox.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--sender", "sender_kind", help="Override [sender] kind for this run.")
@click.option("--retry-failed", is_flag=True, help="Retry the recipients that failed before.")
@click.pass_context
@handle_errors
def send(
    ctx: click.Context,
    edition: int,
    to: tuple[str, ...],
    dry_run: bool,
    yes: bool,
    sender_kind: str | None,
    retry_failed: bool,
) -> None:
    """Send EDITION to every active subscriber, exactly once, resumably.

    \b
    Examples:
      newsletter send 12 --to me@example.org   # a test send
      newsletter send 12 --dry-run             # everything, into outbox/
      newsletter send 12 --yes                 # for real; rerun to resume after a crash
    """
    from newsletter.deliver.send import open_state, plan_send, send_edition

    config = _config(ctx)
    with open_state(config) as db:
        plan = plan_send(config, edition, db=db, sender_kind=sender_kind, allow_open=bool(to))
        for finding in plan.check.findings:
            click.echo(str(finding), err=True)
        who = ", ".join(to) if to else f"{plan.recipients} active subscribers"
        click.echo(
            f"edition {plan.edition.number}: {plan.rendered.subject}\n"
            f"sender: {'outbox (dry run)' if dry_run else plan.sender}; to: {who}"
        )
        if not (yes or to or dry_run):
            if not sys.stdin.isatty():
                raise SendError(
                    "not sending without confirmation", hint="pass --yes to send without asking"
                )
            click.confirm("Send now?", abort=True)
        with graceful_stop() as stop:
            report = send_edition(
                config,
                plan,
                db=db,
                dry_run=dry_run,
                to=to,
                stop=stop,
                progress=Progress(plan.recipients),
            )
    if sys.stderr.isatty():
        click.echo("", err=True)
    for line in report.test_results:
        click.echo(line)
    if to:
        return
    run = report.run
    click.echo(
        f"this run: sent {run.sent}, failed {run.failed}"
        + (f", {report.enqueued} newly enqueued" if report.enqueued else "")
    )
    if report.summary is not None:
        _print_summary(report.summary)
    if run.stopped:
        raise SendError(run.stopped, hint=f"run `newsletter send {edition}` again to resume")


def _print_summary(s: Any) -> None:
    click.echo(
        f"edition {s.edition}: {s.total} recipients = {s.sent} sent + {s.failed} failed "
        f"+ {s.pending} pending + {s.suppressed} suppressed"
    )
    for email, error in s.failures[:50]:
        click.echo(f"  failed {email}: {error}")
    if len(s.failures) > 50:
        click.echo(f"  … and {len(s.failures) - 50} more")


@cli.command()
@click.argument("edition", type=EDITION)
@click.pass_context
@handle_errors
def status(ctx: click.Context, edition: int) -> None:
    """Reconcile EDITION's ledger: sent, failed (with reasons), pending, suppressed."""
    from newsletter.deliver.send import open_state
    from newsletter.state.ledger import Ledger

    with open_state(_config(ctx)) as db:
        _print_summary(Ledger(db).summary(edition))


@cli.group()
def subscribers() -> None:
    """Manage the subscriber list (stored in [state] database)."""


def _db(ctx: click.Context) -> Any:
    from newsletter.deliver.send import open_state

    return open_state(_config(ctx))


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="")
@click.option("--tag", "tags", multiple=True)
@click.pass_context
@handle_errors
def subscribers_add(ctx: click.Context, email: str, name: str, tags: tuple[str, ...]) -> None:
    """Add one subscriber (active)."""
    from newsletter.state import subscribers as subs

    with _db(ctx) as db:
        sub = subs.add(db, email, name, tags)
    click.echo(f"{sub.email}: {sub.status.value}")


@subscribers.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--strict", is_flag=True, help="Any bad row aborts the import; nothing is written.")
@click.pass_context
@handle_errors
def subscribers_import(ctx: click.Context, file: Path, strict: bool) -> None:
    """Import FILE.csv (header row: email, name, tags); bad rows reported as file:line: reason."""
    from newsletter.state import subscribers as subs

    with _db(ctx) as db:
        report = subs.import_csv(db, file, strict=strict)
    for problem in (*report.problems, *report.skipped):
        click.echo(str(problem), err=True)
    click.echo(report.summary())
    if report.problems:
        sys.exit(1)


@subscribers.command("export")
@click.option("--status", "status_", help="Only this status.")
@click.pass_context
@handle_errors
def subscribers_export(ctx: click.Context, status_: str | None) -> None:
    """Write the list as CSV to standard output."""
    from newsletter.state import subscribers as subs

    with _db(ctx) as db:
        subs.export_csv(db, sys.stdout, _status(status_))


def _status(value: str | None) -> Any:
    from newsletter.models import SubscriberStatus

    if value is None:
        return None
    try:
        return SubscriberStatus(value)
    except ValueError:
        raise click.BadParameter(
            ", ".join(s.value for s in SubscriberStatus), param_hint="--status"
        ) from None


@subscribers.command("list")
@click.option("--status", "status_", help="Only this status (active, unsubscribed, …).")
@click.pass_context
@handle_errors
def subscribers_list(ctx: click.Context, status_: str | None) -> None:
    """List subscribers: email, name, status, tags."""
    from newsletter.state import subscribers as subs

    with _db(ctx) as db:
        for sub in subs.iter_subscribers(db, _status(status_)):
            click.echo(f"{sub.email}\t{sub.name}\t{sub.status.value}\t{','.join(sub.tags)}")


@subscribers.command("remove")
@click.argument("email")
@click.pass_context
@handle_errors
def subscribers_remove(ctx: click.Context, email: str) -> None:
    """Remove a subscriber (a suppression, if any, is kept)."""
    from newsletter.state import subscribers as subs

    with _db(ctx) as db:
        removed = subs.remove(db, email)
    if not removed:
        raise SendError(f"{email}: not on the list")
    click.echo(f"removed {email}")


@subscribers.command("count")
@click.pass_context
@handle_errors
def subscribers_count(ctx: click.Context) -> None:
    """Count subscribers by status."""
    from newsletter.state import subscribers as subs

    with _db(ctx) as db:
        counts = subs.count(db)
    for key in sorted(counts):
        click.echo(f"{key}\t{counts[key]}")
    click.echo(f"total\t{sum(counts.values())}")
