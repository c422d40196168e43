"""`newsletter preview`: bind the port, serve the preview app with uvicorn, open a browser."""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from newsletter.config import CONFIG_NAME, load_config
from newsletter.errors import NewsletterError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Host headers accepted when bound to loopback: a web page that rebinds its own DNS name to
# 127.0.0.1 must not be able to read drafts through the visitor's browser.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn, so a busy port is one clear error and port 0 works."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise NewsletterError(
            f"cannot listen on {host!r}: {exc.strerror}", hint="use --host 127.0.0.1 (the default)"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise NewsletterError(
                f"port {port} on {host} is already in use",
                hint=f"stop the other server or use --port {port + 1}",
            ) from exc
        raise NewsletterError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    return sock


def _open_when_ready(server: object, url: str) -> None:
    def wait() -> None:
        for _ in range(100):
            if getattr(server, "started", False):
                webbrowser.open(url)
                return
            time.sleep(0.05)

    threading.Thread(target=wait, name="newsletter-preview-browser", daemon=True).start()


def _server(root: Path, host: str, **options: Any) -> Any:
    try:
        import uvicorn

        from newsletter.preview.app import create_app
    except ImportError as exc:
        raise NewsletterError(
            f"`newsletter preview` needs Starlette and uvicorn ({exc.name} is missing)",
            hint="pip install 'newsletter[serve]'",
        ) from exc
    app = create_app(root, allowed_hosts=LOCAL_HOSTS if host in LOOPBACK else None, **options)
    # ws="none": no websockets import; the graceful timeout ends open long polls on Ctrl+C.
    return uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", lifespan="on", ws="none", timeout_graceful_shutdown=1
        )
    )


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


@contextlib.contextmanager
def background_server(
    root: Path, *, host: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[str]:
    """Run the preview in a thread (tests, screenshots); yields its URL, stops on exit."""
    sock = _bind(host, port)
    server = _server(Path(root).resolve(), host, **options)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="newsletter-preview-server", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise NewsletterError("the preview server did not start")
            time.sleep(0.02)
        yield _url(host, sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve_preview(config_root: Path, host: str, port: int, open_browser: bool) -> None:
    """Serve the preview of the project at ``config_root`` until interrupted (Ctrl+C).

    A broken config.toml, issue file or template does not stop the server: pages show the
    errors and recover once the file is fixed. Only a missing config.toml is fatal.
    """
    root = Path(config_root).resolve()
    if not (root / CONFIG_NAME).is_file():
        load_config(root)  # raises the usual "config.toml not found … run newsletter init"
    server = _server(root, host)
    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])
    click.echo(f"Previewing {root} at {url}  (Ctrl+C to stop)")
    if host not in LOOPBACK:
        click.echo(f"warning: listening on {host}: other machines can see drafts", err=True)
    if open_browser:
        _open_when_ready(server, url)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
