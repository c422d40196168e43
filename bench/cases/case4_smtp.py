"""Case 4: `send` over SMTP to a local sink, ledger durable, against a naive smtplib loop."""

from __future__ import annotations

import smtplib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parseaddr
from typing import TYPE_CHECKING

from bench.cases import (
    SECRET,
    Baseline,
    Case,
    Context,
    Job,
    child_argv,
    child_env,
    emit,
    rate_of,
    send_child,
)
from bench.cases import timed as timed_region
from bench.cases.case3_messages import SENT_AT, send_project
from bench.corpus import fresh_state, subscriber_db, subscriber_rows
from bench.servers import start_smtp_sink

if TYPE_CHECKING:
    from newsletter.config import Config

# Workers and pooled connections: each worker waits for the group commit of the ledger after
# every message, so more workers mean more messages per fsync (see README.md).
CONCURRENCY = 16


def _smtp_config(port: int) -> str:
    return (
        f'\n[sender.smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f"connections = {CONCURRENCY}\ntimeout = 30\n"
    )


@contextmanager
def cases(ctx: Context) -> Iterator[list[Case]]:
    n, m = ctx.sizes.smtp, ctx.sizes.smtp_naive
    template = subscriber_db(ctx.work, n)
    with start_smtp_sink() as sink:
        root = send_project(
            ctx, "smtp", sender="smtp", concurrency=CONCURRENCY, extra=_smtp_config(sink.port)
        )
        job = Job(
            child_argv("case4_smtp", "ours", root, n),
            root,
            rate_of,
            env=child_env(),
            before=lambda i: fresh_state(template, root),
        )

        def check(runs: list[dict[str, object]]) -> str:
            short = [r["count"] for r in runs if r["count"] != n]
            return f"the ledger recorded {short} sent, not {n}" if short else ""

        naive = Job(
            child_argv("case4_smtp", "naive", root, m, sink.port), root, rate_of, env=child_env()
        )
        yield [
            Case(
                "smtp",
                4,
                f"SMTP dispatch, {n:,} messages, ledger durable",
                "msg/s",
                "higher",
                job,
                target=1_500,
                check=check,
                baselines=[
                    Baseline(
                        "smtplib_naive", f"smtplib, new connection per message ({m:,})", naive, 5.0
                    )
                ],
                notes=[
                    f"sink: {sink.what}",
                    f"send_edition (enqueue, {CONCURRENCY} workers with pooled connections, "
                    "group commit with SQLite synchronous=FULL)",
                ],
            )
        ]


# -- the child ----------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    done = send_child(argv, naive)
    if done is None:
        return
    report, t = done
    summary = report.summary
    sent = summary.sent if summary is not None else 0
    emit(
        count=sent,
        seconds=t["seconds"],
        cpu=t["cpu"],
        run_sent=report.run.sent,
        failed=report.run.failed,
    )


def naive(config: Config, n: int, port: int) -> None:
    """The loop everyone writes first: connect, send, quit, one message after another."""
    from newsletter.deliver.message import PreparedEdition
    from newsletter.pipeline import load_and_group, render_edition
    from newsletter.tokens import Signer

    rendered = render_edition(config, load_and_group(config), 1)
    prepared = PreparedEdition(config, rendered, Signer(SECRET.encode()), sent_at=SENT_AT)
    sender = parseaddr(config.from_header)[1]
    rows = [(row[0], row[2], i + 1) for i, row in enumerate(subscriber_rows(n))]
    with timed_region() as t:
        for email, name, sid in rows:
            data = prepared.message(email, name, sid).as_bytes()
            # A fixed HELO name: smtplib would otherwise ask DNS for ours on every connection.
            server = smtplib.SMTP("127.0.0.1", port, local_hostname="bench.localhost")
            server.sendmail(sender, [email], data)
            server.quit()
    emit(count=n, seconds=t["seconds"], cpu=t["cpu"])


if __name__ == "__main__":
    main(sys.argv[1:])
