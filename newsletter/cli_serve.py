"""CLI commands for the subscription service: `serve` and `unsubscribe --from-email`."""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import click

from newsletter.cli import _config, cli, handle_errors
from newsletter.errors import NewsletterError


@cli.command()
@click.option("--host", help="Address to listen on (default: [serve] host, else 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: [serve] port, else 8080).")
@click.option(
    "--trusted-proxy",
    "trusted",
    multiple=True,
    metavar="IP[/BITS]",
    help="A reverse proxy whose X-Forwarded-For/-Proto count (repeatable; adds to "
    "[serve] trusted_proxies).",
)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, host: str | None, port: int | None, trusted: tuple[str, ...]) -> None:
    """Run the subscription service: archive, feeds, subscribe form, unsubscribe, webhooks.

    \b
    Examples:
      newsletter serve                                  # http://127.0.0.1:8080/
      newsletter serve --port 9000 --trusted-proxy 127.0.0.1

    Put it behind a reverse proxy for HTTPS; see docs/serve.md.
    """
    try:
        import uvicorn

        from newsletter.serve.app import create_app
        from newsletter.serve.settings import load_settings
    except ImportError as exc:
        raise NewsletterError(
            f"the subscription service needs {exc.name}", hint="pip install 'newsletter[serve]'"
        ) from None
    config = _config(ctx)
    settings = load_settings(config, host=host, port=port, trusted_proxies=trusted)
    app = create_app(config, settings=settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    click.echo(
        f"serving {config.newsletter.title} on http://{settings.host}:{settings.port}/ "
        "(Ctrl+C to stop)",
        err=True,
    )
    # Proxy headers are handled by the app itself, and only from [serve] trusted_proxies;
    # uvicorn's access log would print unsubscribe tokens, so the app logs requests instead.
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level="info",
    )


@cli.command()
@click.option(
    "--from-email",
    is_flag=True,
    help="Read one inbound message on standard input (an MTA pipe) and unsubscribe.",
)
@click.pass_context
def unsubscribe(ctx: click.Context, from_email: bool) -> None:
    """Unsubscribe whoever an inbound email names: the mailto: List-Unsubscribe path.

    The token in the Subject ("unsubscribe TOKEN") decides; without a genuine one the From
    address is unsubscribed if it is on the list. Exits 0 when done and when nothing
    matched (the MTA must not bounce), 75 (EX_TEMPFAIL: retry later) on internal errors.

    \b
    Example (Postfix pipe, see docs/serve.md):
      newsletter -C /srv/digest unsubscribe --from-email < message.eml
    """
    from newsletter.unsubscribe_mail import EX_TEMPFAIL, run

    if not from_email:
        raise click.UsageError("pipe a message on standard input and pass --from-email")
    root: Path = ctx.obj["root"]
    try:
        outcome = run(_config(ctx), sys.stdin.buffer)
    except NewsletterError as exc:
        for line in exc.lines():
            click.echo(line, err=True)
        click.echo(f"{root}: temporary failure, the message will be retried", err=True)
        sys.exit(EX_TEMPFAIL)
    except Exception:
        traceback.print_exc()
        sys.exit(EX_TEMPFAIL)
    click.echo(outcome.message)
