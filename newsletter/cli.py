"""The command line: parse flags, call one library function, print a short summary."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from newsletter.errors import NewsletterError

F = TypeVar("F", bound=Callable[..., Any])


def _fail(exc: NewsletterError) -> None:
    for line in exc.lines():
        click.echo(line, err=True)
    sys.exit(exc.exit_code)


def handle_errors(func: F) -> F:
    """User mistakes become `path:line: message` lines and exit 1; bugs keep their traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NewsletterError as exc:
            _fail(exc)

    return wrapper  # type: ignore[return-value]


def _config(ctx: click.Context) -> Any:
    from newsletter.config import load_config

    return load_config(ctx.obj["root"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "--root",
    type=click.Path(file_okay=False, path_type=Path),
    default=".",
    show_default=True,
    help="The newsletter project directory (holds config.toml).",
)
@click.version_option(package_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, root: Path) -> None:
    """Publish a newsletter or digest from plain Markdown files.

    \b
    Typical week:
      newsletter new "Paper title" --url https://arxiv.org/abs/…
      newsletter preview            # look at it in a browser
      newsletter build              # public/: archive, feeds, email files
      newsletter send 12            # mail edition 12 to the subscribers
    """
    ctx.ensure_object(dict)
    ctx.obj["root"] = root


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (default: [build] out, usually public/).",
)
@click.option("--drafts", is_flag=True, help="Include draft issues and the open edition.")
@click.pass_context
@handle_errors
def build(ctx: click.Context, out: Path | None, drafts: bool) -> None:
    """Build the web archive, the feeds and the email files of every edition.

    \b
    Example: newsletter build --out /tmp/site --drafts
    """
    from newsletter.pipeline import build as run_build

    config = _config(ctx)
    report = run_build(
        config, out=out, drafts=drafts, on_wait=lambda message: click.echo(message, err=True)
    )
    if report.up_to_date:
        click.echo(f"{report.editions} editions, nothing changed: {report.out} is up to date")
        return
    cached = f"{report.cached} from the render cache, " if report.cached else ""
    click.echo(
        f"{report.editions} editions: {len(report.rendered)} rendered, {cached}"
        f"{report.reused} unchanged → {report.out}"
    )


@cli.command()
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--drafts", is_flag=True, help="Also check drafts and the open edition.")
@click.pass_context
@handle_errors
def check(ctx: click.Context, strict: bool, drafts: bool) -> None:
    """Validate config.toml, every issue file and every edition; report all problems at once."""
    from newsletter.checks import run_checks

    config = _config(ctx)
    result = run_checks(config, drafts=drafts)
    for finding in result.findings:
        click.echo(str(finding), err=True)
    errors = result.errors(strict=strict)
    if errors:
        click.echo(f"{errors} error(s), {len(result.findings) - errors} warning(s)", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {result.editions} editions, {result.issues} issue files checked"
        + (f", {len(result.findings)} warning(s)" if result.findings else "")
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--drafts", is_flag=True, help="Include drafts and the open edition.")
@click.pass_context
@handle_errors
def editions(ctx: click.Context, as_json: bool, drafts: bool) -> None:
    """List editions: number, title, dates, item count and state."""
    from newsletter.pipeline import load_and_group

    config = _config(ctx)
    grouping = load_and_group(config, drafts=drafts)
    rows = [
        {
            "number": e.number,
            "key": e.key,
            "title": e.title,
            "start": e.start.isoformat(),
            "end": e.end.isoformat(),
            "items": len(e.issues),
            "state": "open" if e.is_open else "draft" if e.draft else "published",
            # Exactly the Subject header and preheader that `send` uses (same Edition fields).
            "subject": e.subject,
            "preheader": e.preheader,
        }
        for e in grouping.editions
    ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(
            f"{r['number']:>4}  {r['start']}–{r['end']}  {r['items']:>3} items  "
            f"{r['state']:<9}  {r['title']}"
        )
    if not rows:
        click.echo("no editions yet")


@cli.command()
@click.argument("title")
@click.option("--url", help="Link to the paper or post.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.pass_context
@handle_errors
def new(ctx: click.Context, title: str, url: str | None, tags: tuple[str, ...]) -> None:
    """Create a new issue file dated now, named issues/YYYY/YYYY-MM-DD-slug.md."""
    from newsletter.content import create_issue

    config = _config(ctx)
    path = create_issue(config, title, url=url, tags=tags)
    click.echo(str(path.relative_to(config.root)))


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--title", default="My Newsletter", show_default=True)
@handle_errors
def init(directory: Path, title: str) -> None:
    """Create a new newsletter project in DIRECTORY (never overwrites a file)."""
    from newsletter.scaffold import init_project

    for path in init_project(directory, title):
        click.echo(f"created {path}")


@cli.command()
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; the default keeps the preview on this machine.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the preview in a web browser.")
@click.pass_context
@handle_errors
def preview(ctx: click.Context, port: int, host: str, open_browser: bool) -> None:
    """Serve a live preview of every edition, drafts and the open one included.

    \b
    Email at 375 px and desktop width, light/dark, plain text, headers, archive page,
    feed entry and pre-send checks; saving a file reloads the page. Nothing is written or sent.
    Example: newsletter preview --open
    """
    from newsletter.preview.command import serve_preview

    serve_preview(ctx.obj["root"], host, port, open_browser)


def main() -> None:
    cli(prog_name="newsletter")


# Register the delivery commands (send, status, subscribers) defined in their own module.
import newsletter.cli_delivery  # noqa: E402
import newsletter.cli_schedule  # noqa: E402
import newsletter.cli_serve  # noqa: E402, F401
