"""One SMTP connection for SMTPSender: connect, secure, authenticate, then fast transactions."""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from newsletter.errors import PermanentSendError

log = logging.getLogger(__name__)

SECURITY_MODES = ("starttls", "tls", "none")
_EXPECTED = {"MAIL": (250,), "RCPT": (250, 251), "DATA": (354,)}


@dataclass(frozen=True, slots=True)
class Settings:
    """Where and how to connect; shared read-only by every connection of one sender."""

    host: str
    port: int
    security: str
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = 30.0
    helo: str = "localhost"
    ssl_context: ssl.SSLContext | None = None

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


class Reply(Exception):
    """The server answered with something other than the success code we needed."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(f"{stage}: {code} {text}")
        self.stage, self.code, self.text = stage, code, text


class Broken(Exception):
    """The connection is unusable (refused, reset, closed or timed out) and has been closed."""

    def __init__(self, stage: str, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(f"{stage}: {reason}")
        self.timed_out = timed_out


class Unsupported(Exception):
    """The message needs an extension (SMTPUTF8) this server does not offer."""


def dot_stuff(data: bytes) -> bytes:
    """DATA payload per RFC 5321 4.5.2, terminator included; expects CRLF-only input.

    Two C-speed replaces instead of smtplib's regex passes over every 40 KB message.
    """
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def fix_line_endings(data: bytes) -> bytes:
    """Turn any bare LF or CR into CRLF (strict servers reject them); cheap when there are none."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") == crlf and data.count(b"\r") == crlf:
        return data
    return re.sub(rb"\r\n|\n|\r", b"\r\n", data)


class Connection:
    """An open, greeted, secured and authenticated session; used by one thread at a time."""

    def __init__(self, smtp: smtplib.SMTP, settings: Settings) -> None:
        self.smtp = smtp
        self.settings = settings

    @classmethod
    def open(cls, settings: Settings) -> Connection:
        """Connect and get ready to send; raises Broken, Reply or PermanentSendError."""
        smtp = _connect(settings)
        conn = cls(smtp, settings)
        try:
            if smtp.sock is not None:
                # Commands are written whole; Nagle would hold the tail of each message back
                # until the server's delayed ACK (~40 ms per message).
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with _wire("EHLO"):
                conn._hello()
                if settings.security == "starttls":
                    conn._starttls()
                if settings.username:
                    conn._login()
        except BaseException:
            smtp.close()
            raise
        log.debug("connected to %s (%s)", settings.where, settings.security)
        return conn

    def _hello(self) -> None:
        code, text = self.smtp.ehlo()
        if 500 <= code < 600:  # a pre-ESMTP server: plain HELO is all it speaks
            code, text = self.smtp.helo()
        if not 200 <= code < 300:
            raise Reply("EHLO", code, _text(text))

    def _starttls(self) -> None:
        s = self.settings
        if not self.smtp.has_extn("starttls"):
            # Never fall back to plain text: that is exactly what a downgrade attacker wants.
            raise PermanentSendError(
                f"SMTP server {s.where} does not offer STARTTLS; refusing to send unencrypted",
                hint='use security = "tls" for port 465, or security = "none" only for a '
                "trusted relay on this machine",
            )
        try:
            self.smtp.starttls(context=s.ssl_context)
        except smtplib.SMTPResponseException as exc:
            raise Reply("STARTTLS", exc.smtp_code, _text(exc.smtp_error)) from None
        except ssl.SSLError as exc:
            raise _tls_failure(s, "STARTTLS", exc) from exc
        self._hello()

    def _login(self) -> None:
        s = self.settings
        if not isinstance(self.smtp.sock, ssl.SSLSocket) and s.security != "none":
            raise PermanentSendError(
                f"refusing to send SMTP credentials to {s.where} over an unencrypted connection"
            )
        if not self.smtp.has_extn("auth"):
            raise PermanentSendError(
                f"SMTP server {s.where} does not offer AUTH",
                hint="remove username, or check host and port",
            )
        try:
            self.smtp.login(s.username, s.password)
        except smtplib.SMTPAuthenticationError as exc:
            if 400 <= exc.smtp_code < 500:
                raise Reply("AUTH", exc.smtp_code, _text(exc.smtp_error)) from None
            raise PermanentSendError(
                f"SMTP authentication as {s.username!r} at {s.where} failed: "
                f"{exc.smtp_code} {_text(exc.smtp_error)}",
                hint="check username and the password environment variable",
            ) from None
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPResponseException):
                raise
            raise PermanentSendError(f"SMTP authentication at {s.where}: {exc}") from None

    def transact(self, mail_from: str, rcpt: str, payload: bytes, *, size: int) -> str:
        """One message: MAIL, RCPT, DATA, payload; returns the final 2xx reply text.

        Raises Reply (the server said no), Broken (the connection died) or Unsupported.
        With PIPELINING, MAIL/RCPT/DATA go out in one write (RFC 2920): two round trips.
        """
        smtp = self.smtp
        params = ""
        if not (mail_from.isascii() and rcpt.isascii()):
            if not smtp.has_extn("smtputf8"):
                raise Unsupported(
                    f"{self.settings.where} does not support SMTPUTF8, needed for "
                    "a non-ASCII address"
                )
            params += " SMTPUTF8"
        if smtp.has_extn("size"):
            params += f" SIZE={size}"
        if smtp.has_extn("8bitmime") and not payload.isascii():
            params += " BODY=8BITMIME"
        commands = [
            ("MAIL", f"MAIL FROM:<{mail_from}>{params}\r\n".encode()),
            ("RCPT", f"RCPT TO:<{rcpt}>\r\n".encode()),
            ("DATA", b"DATA\r\n"),
        ]
        pipelining = smtp.has_extn("pipelining")
        with _wire("MAIL/RCPT"):
            if pipelining:
                self._send(b"".join(command for _, command in commands))
            failure: Reply | None = None
            for stage, command in commands:
                if not pipelining:
                    self._send(command)
                code, text = self._reply()
                if code == 421:  # the server is closing this session: later replies never come
                    raise Reply(stage, code, text)
                if failure is None and code not in _EXPECTED[stage]:
                    failure = Reply(stage, code, text)
                    if not pipelining:
                        break
            if failure is not None:
                if failure.stage != "DATA" and code == 354:  # a pipeliner accepted DATA anyway
                    self._send(b".\r\n")
                    self._reply()
                raise failure
        with _wire("DATA"):
            self._send(payload)
            code, text = self._reply()
        if not 200 <= code < 300:
            raise Reply("DATA", code, text)
        return text

    def reset(self) -> bool:
        """RSET after a refused transaction; False when the connection is not worth keeping."""
        try:
            with _wire("RSET"):
                self._send(b"RSET\r\n")
                return self._reply()[0] == 250
        except Broken:
            return False

    def close(self, *, polite: bool = True) -> None:
        """QUIT (briefly: a stalled server must not stall close()) and close the socket."""
        smtp = self.smtp
        try:
            if polite and smtp.sock is not None:
                smtp.sock.settimeout(min(self.settings.timeout, 2.0))
                smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass  # we are leaving anyway
        finally:
            smtp.close()

    def _send(self, data: bytes) -> None:
        sock = self.smtp.sock
        if sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        try:
            sock.sendall(data)
        except OSError as exc:
            self.smtp.close()
            raise smtplib.SMTPServerDisconnected(str(exc) or type(exc).__name__) from exc

    def _reply(self) -> tuple[int, str]:
        code, text = self.smtp.getreply()
        if code < 200:  # garbage instead of a reply: the session cannot be trusted any more
            self.smtp.close()
            raise smtplib.SMTPServerDisconnected(f"unreadable reply {_text(text)!r}")
        return code, _text(text)


@contextmanager
def _wire(stage: str) -> Iterator[None]:
    """Translate smtplib/socket failures into Broken, which callers treat as 'reconnect'."""
    try:
        yield
    except smtplib.SMTPServerDisconnected as exc:
        timed_out = isinstance(exc.__cause__ or exc.__context__, TimeoutError)
        raise Broken(
            stage,
            "timed out" if timed_out else str(exc) or "connection closed",
            timed_out=timed_out,
        ) from exc
    except smtplib.SMTPResponseException as exc:
        raise Reply(stage, exc.smtp_code, _text(exc.smtp_error)) from None
    except ssl.SSLError as exc:
        raise Broken(stage, f"TLS error: {exc}") from exc
    except OSError as exc:
        raise Broken(
            stage, str(exc) or type(exc).__name__, timed_out=isinstance(exc, TimeoutError)
        ) from exc


def _connect(s: Settings) -> smtplib.SMTP:
    try:
        if s.security == "tls":
            return smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=s.helo, timeout=s.timeout, context=s.ssl_context
            )
        return smtplib.SMTP(s.host, s.port, local_hostname=s.helo, timeout=s.timeout)
    except smtplib.SMTPConnectError as exc:  # a banner other than 220, e.g. 421 or 554
        raise Reply("connect", exc.smtp_code, _text(exc.smtp_error)) from None
    except ssl.SSLError as exc:
        raise _tls_failure(s, "connect", exc) from exc
    except smtplib.SMTPServerDisconnected as exc:
        timed_out = isinstance(exc.__context__, TimeoutError)
        raise Broken(
            "connect",
            "timed out waiting for the greeting" if timed_out else str(exc),
            timed_out=timed_out,
        ) from exc
    except OSError as exc:
        raise Broken(
            "connect",
            f"cannot connect to {s.where}: {exc.strerror or exc}",
            timed_out=isinstance(exc, TimeoutError),
        ) from exc


def _tls_failure(s: Settings, stage: str, exc: ssl.SSLError) -> Broken | PermanentSendError:
    """A dropped handshake is worth a retry; a certificate or protocol mismatch is not."""
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Broken(stage, f"TLS handshake interrupted: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentSendError(
            f"the TLS certificate of {s.where} cannot be trusted: {exc.verify_message}",
            hint="use the host name the certificate names, or ca_file for a private CA",
        )
    return PermanentSendError(
        f"TLS handshake with {s.where} failed: {exc.reason or exc}",
        hint='port 465 wants security = "tls", 587 and 25 "starttls"',
    )


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return " ".join(text.split())
