"""SMTPSender: delivers over SMTP with a pool of reused connections, STARTTLS/TLS, AUTH and DKIM."""

from __future__ import annotations

import functools
import logging
import re
import socket
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any, ClassVar, Self

from newsletter.errors import ConfigError, PermanentSendError, Problem, located
from newsletter.senders.base import Message, Result, Sender, permanent, secret_from_env, sent
from newsletter.senders.base import transient as transient_result
from newsletter.senders.smtp_wire import (
    SECURITY_MODES,
    Broken,
    Connection,
    Reply,
    Settings,
    Unsupported,
    dot_stuff,
    fix_line_endings,
)

log = logging.getLogger(__name__)

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_PASSWORD_ENV = "NEWSLETTER_SMTP_PASSWORD"
DEFAULT_DKIM_KEY_ENV = "NEWSLETTER_DKIM_PRIVATE_KEY"
DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
)
_OPTIONS = (
    "host",
    "port",
    "security",
    "username",
    "password_env",
    "timeout",
    "connections",
    "helo",
    "envelope_from",
    "ca_file",
    "dkim_selector",
    "dkim_domain",
    "dkim_key_env",
)
# An envelope address goes verbatim into "MAIL FROM:<…>" / "RCPT TO:<…>": no CR/LF (command
# injection), no controls, spaces or angle brackets, and an @ with something on both sides.
_ENVELOPE = re.compile(r"[^\x00-\x20\x7f<>@]+@[^\x00-\x20\x7f<>@]+")
_HARD_STATUS = frozenset({"5.1.1", "5.1.2", "5.1.10"})
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")
_USER_UNKNOWN = re.compile(
    r"user unknown|unknown (?:user|recipient|mailbox)|no such (?:user|mailbox|recipient|address)"
    r"|(?:mailbox|recipient|address|user|account) (?:not found|unknown|does not exist"
    r"|doesn't exist)|invalid (?:mailbox|recipient)",
    re.IGNORECASE,
)
_QUEUE_ID = re.compile(r"queued as\s+<?([^\s<>;]+)|\bid=<?([^\s<>;]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DKIMKey:
    """What signs every message: d= domain, s= selector and a PKCS#1 RSA private key (PEM)."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)

    def sign(self, data: bytes) -> bytes:
        """The DKIM-Signature header line (CRLF-terminated) to put in front of ``data``."""
        import dkim

        try:
            header: bytes = dkim.sign(
                data,
                self.selector.encode(),
                self.domain.encode(),
                self.private_key,
                include_headers=list(DKIM_HEADERS),
                linesep=b"\r\n",
            )
        except dkim.DKIMException as exc:
            raise PermanentSendError(
                f"DKIM signing failed: {exc}", hint="check dkim_key_env holds an RSA private key"
            ) from exc
        return header


class SMTPSender(Sender):
    """Sends each message as one SMTP transaction over a pool of at most ``connections`` sessions.

    Safe to call from several threads: each call borrows an idle connection (or opens one),
    so N dispatcher threads share N reused sessions instead of one handshake per message.
    """

    name: ClassVar[str] = "smtp"

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        timeout: float = 30.0,
        connections: int = 4,
        helo: str = "",
        envelope_from: str = "",
        ca_file: str | None = None,
        dkim: DKIMKey | None = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {SECURITY_MODES}, not {security!r}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        context = None
        if security != "none":
            context = ssl.create_default_context(cafile=ca_file)  # verifies cert and host name
        self.settings = Settings(
            host=host,
            port=port or DEFAULT_PORTS[security],
            security=security,
            username=username,
            password=password,
            timeout=timeout,
            helo=helo or _local_name(),
            ssl_context=context,
        )
        self.envelope_from = envelope_from
        self.dkim = dkim
        self.connections = connections
        self.opened = 0  # connections opened over the sender's life (reuse shows as few)
        self._slots = threading.BoundedSemaphore(connections)
        self._lock = threading.Lock()
        self._idle: list[Connection] = []
        self._closed = False

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        if kwargs:
            raise TypeError(f"SMTPSender got unexpected arguments: {sorted(kwargs)}")
        return cls(**_parse_options(options, environ))

    # sending --------------------------------------------------------------------------------
    def send(self, messages: Sequence[Message]) -> list[Result]:
        if self._closed:
            raise RuntimeError("SMTPSender is closed")
        return [self._send_one(msg) for msg in messages]

    def _send_one(self, msg: Message) -> Result:
        prepared = self._prepare(msg)
        if isinstance(prepared, Result):
            return prepared
        mail_from, payload, size = prepared
        with self._slots:
            conn = self._checkout()
            try:
                for attempt in (1, 2):
                    conn = conn or self._open()
                    try:
                        reply = conn.transact(mail_from, msg.recipient, payload, size=size)
                        return sent(msg, provider_id=queue_id(reply))
                    except Unsupported as exc:
                        return permanent(msg, str(exc))
                    except (Broken, Reply) as exc:
                        if isinstance(exc, Reply) and exc.code != 421:  # refused, session fine
                            if not conn.reset():
                                conn.close(polite=False)
                                conn = None
                            return self._refused(msg, exc)
                        # The session is over (dropped, or 421 "closing"): one retry on a
                        # fresh connection, except after a timeout, which would only double.
                        conn.close(polite=False)
                        conn = None
                        if attempt == 2 or (isinstance(exc, Broken) and exc.timed_out):
                            return transient_result(msg, f"SMTP {exc}")
                        log.debug("%s: %s; reconnecting once", self.settings.where, exc)
                raise AssertionError("unreachable")
            except _Unavailable as exc:
                return transient_result(msg, str(exc))
            finally:
                if conn is not None:
                    self._checkin(conn)

    def _prepare(self, msg: Message) -> tuple[str, bytes, int] | Result:
        """(envelope sender, DATA payload, SIZE) or a PERMANENT result for unusable addresses."""
        mail_from = self.envelope_from or _address_of(msg.from_header)
        for what, address in (("recipient", msg.recipient), ("envelope sender", mail_from)):
            if not _ENVELOPE.fullmatch(address):
                return permanent(msg, f"{what} {address!r} cannot be used in an SMTP envelope")
        data = msg.as_bytes()
        # Prebuilt edition messages promise CRLF-only lines none of which starts with "." (base64
        # bodies, boundaries, headers): skip two passes over every 40 KB message for them.
        ready = getattr(msg, "wire_safe", False) and self.dkim is None
        if not ready:
            data = fix_line_endings(data)
        if self.dkim is not None:
            data = self.dkim.sign(data) + data
        return mail_from, (data + b".\r\n" if ready else dot_stuff(data)), len(data)

    def _refused(self, msg: Message, exc: Reply) -> Result:
        if exc.code == 530:  # authentication required: every message would fail the same way
            raise PermanentSendError(
                f"SMTP server {self.settings.where} requires authentication: {exc.code} {exc.text}",
                hint="set username and password_env",
            )
        if 400 <= exc.code < 500:
            return transient_result(msg, f"SMTP {exc}")
        return permanent(msg, f"SMTP {exc}", hard_bounce=is_hard_bounce(exc.code, exc.text))

    def _open(self) -> Connection:
        try:
            conn = Connection.open(self.settings)
        except Broken as exc:
            raise _Unavailable(f"SMTP {exc}") from exc
        except Reply as exc:
            if exc.code >= 500:  # a 554 banner or refused EHLO: no message will get through
                raise PermanentSendError(
                    f"SMTP server {self.settings.where} refused us at {exc}"
                ) from exc
            raise _Unavailable(f"SMTP {exc}") from exc
        with self._lock:
            self.opened += 1
        return conn

    # the pool -------------------------------------------------------------------------------
    def _checkout(self) -> Connection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None  # LIFO: the warmest connection

    def _checkin(self, conn: Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """QUIT every idle connection; connections in use close when their send() returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class _Unavailable(Exception):
    """No connection could be made (refused, timed out, 4xx greeting): retry the message later."""


def is_hard_bounce(code: int, text: str) -> bool:
    """True when a 5xx reply says the address does not exist, so it should be suppressed."""
    if code not in (550, 551, 553):
        return False
    match = _ENHANCED.match(text)
    status = match.group(1) if match else None
    if status in _HARD_STATUS:
        return True
    return (status is None or status.startswith("5.1.")) and bool(_USER_UNKNOWN.search(text))


def queue_id(reply: str) -> str:
    """The server's id for an accepted message ("queued as 4F3A2B", "id=1r2X…"), else ""."""
    match = _QUEUE_ID.search(reply)
    if match:
        return match.group(1) or match.group(2)
    words = _ENHANCED.sub("", reply).split()
    if not words or words[0].lower().rstrip(":") != "ok":
        return ""
    # "OK <id>" (SES) or Gmail's "OK <timestamp> <id> - gsmtp": the last token with a digit.
    ids = [w for w in words[1:] if any(c.isdigit() for c in w)]
    return ids[-1] if ids else ""


@functools.lru_cache(maxsize=64)
def _address_of(from_header: str) -> str:
    return parseaddr(from_header)[1]


@functools.cache
def _local_name() -> str:
    # Computed once: getfqdn() can block on DNS, smtplib would otherwise call it per connection.
    return socket.getfqdn() or "localhost"


def _parse_options(options: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """[sender.smtp] → SMTPSender keyword arguments; ConfigError lists every problem at once."""
    problems: list[str] = []
    get = options.get
    for key in sorted(options):
        if key == "password":
            problems.append(
                "password: secrets never go in config.toml; put the password in an "
                "environment variable and name it in password_env"
            )
        elif not key.startswith("_") and key not in _OPTIONS:
            problems.append(f"{key}: unknown option (known: {', '.join(_OPTIONS)})")

    def text(key: str, default: str = "") -> str:
        value = get(key, default)
        if not isinstance(value, str) or re.search(r"[\x00-\x20\x7f]", value.strip()):
            problems.append(f"{key}: must be a string without spaces or control characters")
            return default
        return value.strip()

    host = text("host")
    if not host:
        problems.append('host: required, e.g. host = "smtp.example.org"')
    security = get("security", "starttls")
    if security not in SECURITY_MODES:
        problems.append(f"security: must be one of {', '.join(SECURITY_MODES)}")
        security = "starttls"
    port = get("port", DEFAULT_PORTS[security])
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problems.append("port: must be a whole number between 1 and 65535")
    timeout = get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        problems.append("timeout: must be a positive number of seconds")
    connections = get("connections", 4)
    if (
        isinstance(connections, bool)
        or not isinstance(connections, int)
        or not (0 < connections <= 100)
    ):
        problems.append("connections: must be a whole number between 1 and 100")
    envelope_from = text("envelope_from")
    if envelope_from and not _ENVELOPE.fullmatch(envelope_from):
        problems.append("envelope_from: must be a bare address like bounces@example.org")
    username, password = text("username"), ""
    if username:
        try:
            password = secret_from_env(
                options, "password_env", DEFAULT_PASSWORD_ENV, environ, "smtp"
            )
        except ConfigError as exc:
            problems.append(f"password_env: {exc.message}")
    ca_file = text("ca_file") or None
    if ca_file:
        ca_file = str(Path(str(get("_root", "."))) / ca_file)
        if not Path(ca_file).is_file():
            problems.append(f"ca_file: {ca_file} is not a file")
    dkim = _dkim_key(options, environ, problems)
    if problems:
        raise located(
            [Problem("config.toml", None, f"[sender.smtp] {p}") for p in problems],
            "[sender.smtp]",
            ConfigError,
        )
    return dict(
        host=host,
        port=port,
        security=security,
        username=username,
        password=password,
        timeout=float(timeout),
        connections=connections,
        helo=text("helo"),
        envelope_from=envelope_from,
        ca_file=ca_file,
        dkim=dkim,
    )


def _dkim_key(
    options: Mapping[str, Any], environ: Mapping[str, str], problems: list[str]
) -> DKIMKey | None:
    selector, domain = options.get("dkim_selector", ""), options.get("dkim_domain", "")
    if not selector and not domain and "dkim_key_env" not in options:
        return None
    if not (isinstance(selector, str) and selector and isinstance(domain, str) and domain):
        problems.append("dkim_selector, dkim_domain: DKIM needs both (and dkim_key_env)")
        return None
    try:
        pem = secret_from_env(options, "dkim_key_env", DEFAULT_DKIM_KEY_ENV, environ, "smtp")
    except ConfigError as exc:
        problems.append(f"dkim_key_env: {exc.message}")
        return None
    key = DKIMKey(selector, domain, _pkcs1_pem(pem))
    try:  # sign a tiny message now so a bad key fails `newsletter send` before the first message
        key.sign(b"From: a@" + domain.encode() + b"\r\nSubject: t\r\n\r\nt\r\n")
    except PermanentSendError as exc:
        problems.append(f"dkim_key_env: {exc.message} (an RSA key in PEM form is expected)")
        return None
    return key


def _pkcs1_pem(pem: str) -> bytes:
    """dkimpy reads only PKCS#1 ("BEGIN RSA PRIVATE KEY"); OpenSSL 3 writes PKCS#8 by default."""
    # Env vars often carry the PEM with literal "\n" or CRLF: restore real line breaks.
    text = pem.replace("\\n", "\n").replace("\r\n", "\n").strip() + "\n"
    if "BEGIN PRIVATE KEY" not in text:
        return text.encode()
    try:
        from cryptography.hazmat.primitives import serialization
    except ImportError:
        return text.encode()  # the test signature then reports the key as unreadable
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        return text.encode()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
