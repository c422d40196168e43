"""Case 3: personalised, wire-ready messages for many recipients from one rendered edition."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cases import SECRET, Baseline, Case, Context, Job, child_argv, child_env, emit, rate_of
from bench.cases import timed as timed_region
from bench.corpus import make_project, subscriber_rows

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.models import RenderedEdition
    from newsletter.tokens import Signer

SENT_AT = datetime(2024, 6, 3, 8, 0, tzinfo=UTC)


def send_project(ctx: Context, name: str, **config: object) -> Path:
    """One closed edition of two issues: a ~50 KB message, the size a digest email has."""
    root = ctx.work / name
    if root.exists():
        import shutil

        shutil.rmtree(root)
    make_project(root, 2, per_week=2, **config)  # type: ignore[arg-type]
    return root


@contextmanager
def cases(ctx: Context) -> Iterator[list[Case]]:
    root = send_project(ctx, "messages")
    n, m = ctx.sizes.recipients, ctx.sizes.stdlib_recipients
    job = Job(child_argv("case3_messages", "ours", root, n), root, rate_of, env=child_env())

    def check(runs: list[dict[str, object]]) -> str:
        bad = [r["mjml_compiles"] for r in runs if r.get("mjml_compiles") != 1]
        return f"MJML compiled {bad} times per edition, not once" if bad else ""

    stdlib = Job(child_argv("case3_messages", "stdlib", root, m), root, rate_of, env=child_env())
    yield [
        Case(
            "messages",
            3,
            f"prepare {n:,} personalised messages",
            "msg/s",
            "higher",
            job,
            target=50_000,
            check=check,
            baselines=[
                Baseline("stdlib_email", f"stdlib EmailMessage per recipient ({m:,})", stdlib)
            ],
            notes=[
                "timed: render the edition (one MJML compile), then PreparedEdition.message("
                ").as_bytes() per recipient with its unsubscribe token"
            ],
        )
    ]


# -- the child ----------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    import mrml

    from newsletter.config import load_config
    from newsletter.deliver.message import PreparedEdition
    from newsletter.pipeline import find_edition, load_and_group
    from newsletter.render import Renderer
    from newsletter.tokens import Signer

    mode, root, n = argv[0], Path(argv[1]), int(argv[2])
    os.chdir(root)
    compiles = 0
    to_html = mrml.to_html

    def counting(source: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal compiles
        compiles += 1
        return to_html(source, *args, **kwargs)

    mrml.to_html = counting  # type: ignore[assignment]  # same call, counted
    config = load_config(root)
    edition = find_edition(load_and_group(config, use_cache=False), 1)
    recipients = [(row[0], row[2], i + 1) for i, row in enumerate(subscriber_rows(n))]
    signer = Signer(SECRET.encode())
    total = 0
    if mode == "ours":
        with timed_region() as t:
            prepared = PreparedEdition(
                config, Renderer(config).render(edition), signer, sent_at=SENT_AT
            )
            for email, name, sid in recipients:
                total += len(prepared.message(email, name, sid).as_bytes())
    else:
        with timed_region() as t:
            rendered = Renderer(config).render(edition)
            for email, name, sid in recipients:
                total += len(stdlib_message(config, rendered, signer, email, name, sid))
    emit(
        count=n,
        seconds=t["seconds"],
        cpu=t["cpu"],
        mjml_compiles=compiles,
        message_bytes=round(total / n),
    )


def stdlib_message(
    config: Config, rendered: RenderedEdition, signer: Signer, email: str, name: str, sid: int
) -> bytes:
    """The obvious way: a fresh email.message.EmailMessage per recipient (quoted-printable)."""
    from newsletter.models import UNSUBSCRIBE_PLACEHOLDER
    from newsletter.senders.base import SimpleMessage

    token = signer.make("unsubscribe", sid, rendered.edition.number, email)
    url = config.unsubscribe_prefix + token
    msg = SimpleMessage(
        recipient=email,
        name=name,
        subject=rendered.subject,
        from_header=config.from_header,
        html=rendered.email_html.replace(UNSUBSCRIBE_PLACEHOLDER, url),
        text=rendered.email_text.replace(UNSUBSCRIBE_PLACEHOLDER, url),
        message_id=f"<bench.{sid}@papers.example.org>",
        date="Mon, 03 Jun 2024 08:00:00 +0000",
        headers={
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )
    return msg.as_bytes()


if __name__ == "__main__":
    main(sys.argv[1:])
