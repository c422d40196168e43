"""Case 5: `send` through PostmarkSender to a local Postmark-like API that answers after 50 ms."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

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
from bench.servers import POSTMARK_TOKEN, start_postmark

if TYPE_CHECKING:
    from newsletter.config import Config

DELAY = 0.05  # seconds the fake API takes per request, whatever its size
CONCURRENCY = 8  # requests in flight: each waits 50 ms, so more in flight hide that wait
BATCH = 100  # messages per request: the default batch_size (Postmark takes up to 500)


def _postmark_config(port: int) -> str:
    return (
        f'\n[sender.postmark]\nbase_url = "http://127.0.0.1:{port}"\n'
        'token_env = "POSTMARK_SERVER_TOKEN"\n'
    )


@contextmanager
def cases(ctx: Context) -> Iterator[list[Case]]:
    n, m = ctx.sizes.http, ctx.sizes.http_naive
    template = subscriber_db(ctx.work, n)
    env = child_env(POSTMARK_SERVER_TOKEN=POSTMARK_TOKEN)
    with start_postmark(DELAY) as api:
        root = send_project(
            ctx,
            "http",
            sender="postmark",
            concurrency=CONCURRENCY,
            batch_size=BATCH,
            extra=_postmark_config(api.port),
        )
        job = Job(
            child_argv("case5_http", "ours", root, n),
            root,
            rate_of,
            env=env,
            before=lambda i: fresh_state(template, root),
        )

        def check(runs: list[dict[str, Any]]) -> str:
            short = [r["count"] for r in runs if r["count"] != n]
            return f"the ledger recorded {short} sent, not {n}" if short else ""

        naive = Job(child_argv("case5_http", "naive", root, m, api.port), root, rate_of, env=env)
        yield [
            Case(
                "http",
                5,
                f"HTTP API dispatch, {n:,} messages (50 ms per request)",
                "msg/s",
                "higher",
                job,
                target=2_000,
                check=check,
                baselines=[
                    Baseline(
                        "http_per_message",
                        f"httpx, one POST /email per message ({m:,})",
                        naive,
                        20.0,
                    )
                ],
                notes=[
                    f"server: {api.what} (its own process, checks every message's shape)",
                    f"PostmarkSender, batches of {BATCH}, {CONCURRENCY} in flight, ledger durable",
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
    emit(
        count=summary.sent if summary is not None else 0,
        seconds=t["seconds"],
        cpu=t["cpu"],
        failed=report.run.failed,
        errors=report.run.errors[:3],
    )


def naive(config: Config, n: int, port: int) -> None:
    """One request per message, one after another, on a kept-alive connection."""
    import httpx

    from newsletter.deliver.message import PreparedEdition
    from newsletter.pipeline import load_and_group, render_edition
    from newsletter.tokens import Signer

    rendered = render_edition(config, load_and_group(config), 1)
    prepared = PreparedEdition(config, rendered, Signer(SECRET.encode()), sent_at=SENT_AT)
    rows = [(row[0], row[2], i + 1) for i, row in enumerate(subscriber_rows(n))]
    headers = {"Accept": "application/json", "X-Postmark-Server-Token": POSTMARK_TOKEN}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client, timed_region() as t:
        for email, name, sid in rows:
            msg = prepared.message(email, name, sid)
            payload = {
                "From": msg.from_header,
                "To": email,
                "Subject": msg.subject,
                "HtmlBody": msg.html,
                "TextBody": msg.text,
                "MessageStream": "broadcast",
                "Headers": [{"Name": k, "Value": v} for k, v in msg.headers.items()],
            }
            answer = client.post("/email", json=payload, headers=headers)
            answer.raise_for_status()
            if answer.json()["ErrorCode"] != 0:
                raise RuntimeError(answer.text)
    emit(count=n, seconds=t["seconds"], cpu=t["cpu"])


if __name__ == "__main__":
    main(sys.argv[1:])
