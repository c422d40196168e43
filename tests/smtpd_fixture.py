"""A strict, scriptable SMTP server (aiosmtpd) on loopback, in-process or in its own process.

In-process: the ``smtp_server`` / ``make_smtp_server`` fixtures (an ``SMTPServer``).
Own process (so a test can SIGKILL the *sender* and count what the server durably accepted):
``with server_process(tmp_path) as proc: … proc.port … proc.received()``, which runs
``python -m tests.smtpd_fixture --port-file F --record-file G``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.smtpd_protocol import (
    HOST,
    PASSWORD,
    Handler,
    Received,
    StrictSMTP,
    ca_file,
    header_of,
    server_context,
)

__all__ = [
    "HOST",
    "PASSWORD",
    "Received",
    "SMTPServer",
    "ServerProcess",
    "ca_file",
    "make_smtp_server",
    "server_process",
    "smtp_server",
]
REPO = Path(__file__).resolve().parent.parent


class _Controller(Controller):
    """aiosmtpd's Controller on a socket bound beforehand, so port 0 (any free port) works."""

    def __init__(self, owner: SMTPServer, handler: Handler, **kwargs: Any) -> None:
        # proto=IPPROTO_TCP, or asyncio skips TCP_NODELAY and Nagle delays every 2nd reply 40 ms.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, owner.requested_port))
        self.owner = owner
        super().__init__(handler, hostname=HOST, port=self._sock.getsockname()[1], **kwargs)

    def factory(self) -> SMTP:
        self.owner.connections += 1
        return StrictSMTP(self.owner, self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class SMTPServer:
    """A started-on-demand aiosmtpd server on 127.0.0.1 that records what it accepts.

    Scripting (all thread-safe, settable while running):
    ``reject_rcpt(addr, "550 5.1.1 user unknown", times=None)``, ``connect_reply = "421 …"``,
    ``helo_reply = "421 …"``, ``drop_data(times)``, ``stall("DATA")`` / ``release()``.
    """

    def __init__(
        self,
        *,
        starttls: bool = True,
        implicit_tls: bool = False,
        auth: tuple[str, ...] = ("LOGIN", "PLAIN"),
        auth_over_plain: bool = False,
        pipelining: bool = True,
        port: int = 0,
        record_file: str | None = None,
        keep_content: bool = True,
        server_timeout: float = 60.0,
        cert_dir: str | None = None,
    ) -> None:
        self.requested_port = port
        self.pipelining = pipelining
        self.keep_content = keep_content
        self.connect_reply = ""
        self.helo_reply = ""
        # Any RCPT policy beyond reject_rcpt(): address -> reply ("451 …") or None to accept.
        self.rcpt_hook: Callable[[str], str | None] | None = None
        self.connections = 0  # TCP connections that reached the SMTP layer
        self.auth_attempts: list[str] = []  # "PLAIN ada" per AUTH command, however it ended
        self._lock = threading.Lock()
        self._messages: list[Received] = []
        self._rcpt_script: dict[str, tuple[str, int | None]] = {}
        self._counters: dict[str, int] = {}
        self._stalls: set[str] = set()
        self._released = threading.Event()
        self._live: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.accepted = 0  # messages answered 250 after DATA
        self._record_fd = -1
        if record_file:
            self._record_fd = os.open(record_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        context = server_context(cert_dir) if (starttls or implicit_tls) else None
        kwargs: dict[str, Any] = dict(
            server_hostname="localhost",
            ready_timeout=10.0,
            timeout=server_timeout,
            auth_require_tls=not auth_over_plain,
            enable_SMTPUTF8=True,
        )
        kwargs["authenticator"] = self._authenticate
        kwargs["auth_exclude_mechanism"] = [m for m in ("LOGIN", "PLAIN") if m not in auth]
        if implicit_tls:
            kwargs["ssl_context"] = context
        elif starttls:
            kwargs["tls_context"] = context
        self.controller = _Controller(self, Handler(self), **kwargs)
        self.host = HOST
        self.port: int = self.controller.port

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> SMTPServer:
        try:
            self.controller.start()
        except BaseException:
            self.stop()  # release the bound socket and the record file
            raise
        self.connections = 0  # forget the controller's own readiness probe
        return self

    def stop(self) -> None:
        self._released.set()
        if self.controller._thread is not None:
            self.disconnect_all()  # open client sockets would otherwise leak at loop close
            self.controller.stop()
        if not self.controller.loop.is_running() and not self.controller.loop.is_closed():
            self.controller.loop.close()  # never started: the loop would warn when collected
        self.controller._sock.close()
        if self._record_fd >= 0:
            os.close(self._record_fd)
            self._record_fd = -1

    def disconnect_all(self) -> None:
        """Hang up on every client, as a server does with idle sessions; waits until done."""
        done = threading.Event()

        def close_all() -> None:
            for protocol in list(self._live):
                if protocol.transport is not None:
                    protocol.transport.close()
            done.set()

        self.controller.loop.call_soon_threadsafe(close_all)
        done.wait(5)

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what was received -----------------------------------------------------------------------
    @property
    def messages(self) -> list[Received]:
        with self._lock:
            return list(self._messages)

    @property
    def recipients(self) -> list[str]:
        return [rcpt for m in self.messages for rcpt in m.rcpt_tos]

    # scripting -------------------------------------------------------------------------------
    def reject_rcpt(self, address: str, reply: str, times: int | None = None) -> None:
        """Answer RCPT TO:<address> with ``reply`` the next ``times`` times (None: always)."""
        with self._lock:
            self._rcpt_script[address.lower()] = (reply, times)

    def drop_data(self, times: int = 1) -> None:
        """Hang up right after the client starts sending the next ``times`` message bodies."""
        with self._lock:
            self._counters["drop_data"] = times

    def stall(self, stage: str) -> None:
        """Stop answering at ``stage`` ("connect" or "DATA") until release() or stop()."""
        with self._lock:
            self._stalls.add(stage)
            self._released.clear()

    def release(self) -> None:
        with self._lock:
            self._stalls.clear()
        self._released.set()

    def _rcpt_reply(self, address: str) -> str | None:
        if self.rcpt_hook is not None:
            reply = self.rcpt_hook(address)
            if reply:
                return reply
        with self._lock:
            reply, times = self._rcpt_script.get(address.lower(), ("", None))
            if not reply:
                return None
            if times is not None:
                if times <= 0:
                    return None
                self._rcpt_script[address.lower()] = (reply, times - 1)
            return reply

    def _take(self, counter: str) -> bool:
        with self._lock:
            left = self._counters.get(counter, 0)
            self._counters[counter] = max(0, left - 1)
            return left > 0

    async def _maybe_stall(self, stage: str) -> None:
        # Polling a threading.Event keeps release() callable from any thread; stop() cancels us.
        while stage in self._stalls and not self._released.is_set():
            await asyncio.sleep(0.005)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        login = auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?"
        with self._lock:
            self.auth_attempts.append(f"{mechanism} {login}")
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == b"ada"
            and auth_data.password == PASSWORD.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def _accept(self, received: Received) -> None:
        if self._record_fd >= 0:
            # Durable before the 250 goes out: what the file lists, the server really accepted.
            message_id = header_of(received.content, b"message-id")
            os.write(
                self._record_fd,
                "".join(f"{message_id}\t{rcpt}\n" for rcpt in received.rcpt_tos).encode(),
            )
            os.fsync(self._record_fd)
        with self._lock:
            self.accepted += 1
            if self.keep_content:  # off for long benchmark runs: count only
                self._messages.append(received)


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A started server (STARTTLS offered, AUTH after TLS, PIPELINING) on 127.0.0.1."""
    with SMTPServer() as server:
        yield server


@pytest.fixture
def make_smtp_server() -> Iterator[Callable[..., SMTPServer]]:
    """Factory for servers with other options; every server made is stopped afterwards."""
    made: list[SMTPServer] = []

    def make(**options: Any) -> SMTPServer:
        server = SMTPServer(**options).start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@dataclass(frozen=True, slots=True)
class ServerProcess:
    """The fixture server running as a child process; ``received()`` reads its durable record."""

    process: subprocess.Popen[bytes]
    port: int
    record_file: Path
    host: str = HOST

    def received(self) -> list[tuple[str, str]]:
        """(Message-ID, recipient) per accepted recipient, in acceptance order."""
        if not self.record_file.exists():
            return []
        lines = self.record_file.read_text().splitlines()
        return [(mid, rcpt) for mid, _, rcpt in (line.partition("\t") for line in lines)]


@contextlib.contextmanager
def server_process(
    folder: Path, *args: str, record: bool = True, ready_timeout: float = 20.0
) -> Iterator[ServerProcess]:
    """Start ``python -m tests.smtpd_fixture`` (extra CLI ``args``); terminate it on exit.

    ``record=False`` skips the fsync per message, for benchmarks.
    """
    port_file, record_file = folder / "smtpd.port", folder / "smtpd.record"
    # Serve this process's certificate, so ca_file() here trusts the child's STARTTLS.
    options = ["--cert-dir", str(Path(ca_file()).parent)]
    if record:
        options += ["--record-file", str(record_file)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.smtpd_fixture",
            "--port-file",
            str(port_file),
            *options,
            *args,
        ],
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while not port_file.exists():  # written atomically once the server listens
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SMTP server process did not start (exit {process.poll()})")
            time.sleep(0.02)
        yield ServerProcess(process, int(port_file.read_text()), record_file)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    """Run the server in this process until SIGTERM/SIGINT (crash-consistency tests, benchmarks)."""
    parser = argparse.ArgumentParser(prog="python -m tests.smtpd_fixture")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True, help="written atomically once listening")
    parser.add_argument("--record-file", help="one 'message-id<TAB>rcpt' line per accepted rcpt")
    parser.add_argument("--no-starttls", action="store_true")
    parser.add_argument("--cert-dir", help="cert.pem/key.pem to serve (default: a new CA)")
    parser.add_argument("--reject", action="append", default=[], metavar="ADDR=REPLY")
    parser.add_argument("--keep-content", action="store_true", help="hold messages in memory")
    args = parser.parse_args(argv)
    server = SMTPServer(
        port=args.port,
        starttls=not args.no_starttls,
        cert_dir=args.cert_dir,
        record_file=args.record_file,
        keep_content=args.keep_content,
    )
    for rule in args.reject:
        address, _, reply = rule.partition("=")
        server.reject_rcpt(address, reply)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        tmp = f"{args.port_file}.tmp"
        Path(tmp).write_text(str(server.port))
        os.replace(tmp, args.port_file)
        while not stop.wait(0.2):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
