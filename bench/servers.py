"""Local servers for the send cases: an SMTP sink and a Postmark-like batch API, on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
SMTP_SINK_PATHS = ("/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink")
POSTMARK_TOKEN = "bench-postmark-token"
INSTALL_HINT = "apt-get install postfix  (provides /usr/sbin/smtp-sink, a C SMTP sink)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(
    port: int, proc: subprocess.Popen[bytes], banner: bytes | None, timeout: float = 15.0
) -> None:
    """Wait until the server accepts connections (and greets, for SMTP) or fail loudly."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited early with status {proc.returncode}: "
                f"{' '.join(map(str, proc.args))}"
            )  # type: ignore[arg-type]
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as s:
                if banner is None or s.recv(100).startswith(banner):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not come up in {timeout:g} s")


class Server:
    """A server in its own process (so it never competes for our GIL); stops on exit."""

    def __init__(self, argv: list[str], port: int, banner: bytes | None, what: str) -> None:
        self.port = port
        self.what = what
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        try:
            _wait_for(port, self.proc, banner)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def smtp_sink_path() -> str | None:
    found = shutil.which("smtp-sink")
    return found or next((p for p in SMTP_SINK_PATHS if os.access(p, os.X_OK)), None)


def start_smtp_sink(*, prefer_postfix: bool = True) -> Server:
    """Postfix's smtp-sink on a free loopback port, else an aiosmtpd sink (``.what`` says which)."""
    port = free_port()
    path = smtp_sink_path() if prefer_postfix else None
    if path is not None:
        # -u is required when started as root; -m raises the connection cap above the pool.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        return Server(
            [path, *user, "-m", "1024", f"{HOST}:{port}", "1024"],
            port,
            b"220",
            f"Postfix smtp-sink ({path})",
        )
    return Server(
        [sys.executable, "-m", "bench.servers", "smtp", str(port)],
        port,
        b"220",
        "aiosmtpd sink in its own process (smtp-sink not found; " + INSTALL_HINT + ")",
    )


def start_postmark(delay: float = 0.05) -> Server:
    port = free_port()
    return Server(
        [sys.executable, "-m", "bench.servers", "postmark", str(port), str(delay)],
        port,
        None,
        f"Postmark-like batch API answering after {delay * 1000:g} ms",
    )


# -- the servers themselves (run in the child process) ------------------------------------------


def serve_aiosmtpd(port: int) -> None:
    """Accept and discard every message, as smtp-sink does."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 Ok: queued as BENCH"

    controller = Controller(Discard(), hostname=HOST, port=port, data_size_limit=50 * 1024 * 1024)
    controller.start()
    try:
        asyncio.run(asyncio.Event().wait())
    finally:
        controller.stop()


_REQUIRED = ("From", "To", "Subject", "MessageStream")


def _check_message(item: Any) -> str:
    """ "" if ``item`` looks like a Postmark email object, else what is wrong with it."""
    if not isinstance(item, dict):
        return "not an object"
    missing = [k for k in _REQUIRED if not isinstance(item.get(k), str) or not item[k]]
    if missing:
        return "missing " + ", ".join(missing)
    if not (item.get("HtmlBody") or item.get("TextBody")):
        return "no body"
    return ""


class PostmarkHandler(BaseHTTPRequestHandler):
    """POST /email/batch and POST /email, answered like Postmark after a fixed delay."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the real API
    delay = 0.05
    counter = 0
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/stats":
            self._answer(200, {"accepted": PostmarkHandler.counter})
        else:
            self._answer(404, {"ErrorCode": 404, "Message": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("X-Postmark-Server-Token") != POSTMARK_TOKEN:
            self._answer(401, {"ErrorCode": 10, "Message": "bad or missing server token"})
            return
        try:
            data = json.loads(body)
        except ValueError:
            self._answer(422, {"ErrorCode": 402, "Message": "invalid JSON"})
            return
        if self.path == "/email/batch":
            items = data if isinstance(data, list) else None
        elif self.path == "/email":
            items = [data]
        else:
            self._answer(404, {"ErrorCode": 404, "Message": "not found"})
            return
        problems = (
            ["batch must be a JSON array"]
            if items is None
            else [p for p in map(_check_message, items) if p]
        )
        if items is not None and not 0 < len(items) <= 500:
            problems.append("a batch holds 1 to 500 messages")
        if problems:
            self._answer(
                422, {"ErrorCode": 300, "Message": "Invalid email request: " + problems[0]}
            )
            return
        assert items is not None
        time.sleep(self.delay)  # the provider's processing time: what batching amortises
        with self.lock:
            first = PostmarkHandler.counter
            PostmarkHandler.counter += len(items)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.0000000+00:00", time.gmtime())
        answers = [
            {
                "ErrorCode": 0,
                "Message": "OK",
                "MessageID": f"bench-{first + i:08d}",
                "SubmittedAt": stamp,
                "To": item["To"],
            }
            for i, item in enumerate(items)
        ]
        self._answer(200, answers if self.path == "/email/batch" else answers[0])


def serve_postmark(port: int, delay: float) -> None:
    PostmarkHandler.delay = delay
    server = ThreadingHTTPServer((HOST, port), PostmarkHandler)
    server.daemon_threads = True
    server.request_queue_size = 128
    server.serve_forever()


def main(argv: list[str]) -> None:
    kind = argv[0]
    if kind == "smtp":
        serve_aiosmtpd(int(argv[1]))
    elif kind == "postmark":
        serve_postmark(int(argv[1]), float(argv[2]))
    else:
        raise SystemExit(f"unknown server {kind!r}: smtp PORT | postmark PORT DELAY")


if __name__ == "__main__":
    main(sys.argv[1:])
