"""The strict SMTP protocol behind tests/smtpd_fixture.py: aiosmtpd plus scripted misbehaviour."""

from __future__ import annotations

import atexit
import logging
import re
import shutil
import ssl
import tempfile
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP, Envelope, LoginPassword, Session, syntax

if TYPE_CHECKING:
    from tests.smtpd_fixture import SMTPServer

HOST = "127.0.0.1"
PASSWORD = "s3cret-pw"  # the password of the fixture's one user, "ada"
# aiosmtpd sets the deprecated Session.login_data on every AUTH and logs a warning about itself.
logging.getLogger("mail.log").addFilter(lambda record: "login_data" not in record.getMessage())
_PLAIN_ADDR = re.compile(r"\s*<([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+)>(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Received:
    """One message the server accepted with 250 after DATA."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes  # after dot-unstuffing, exactly what the client meant to send
    tls: bool
    login: str | None


@cache
def certificate() -> tuple[str, str]:
    """(cert_file, key_file): a throwaway CA-signed cert for localhost/127.0.0.1, made once."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "newsletter test CA")])

    def builder(subject: x509.Name, public: Any) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
        )

    ca = (
        builder(ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder = Path(tempfile.mkdtemp(prefix="newsletter-smtpd-"))
    atexit.register(shutil.rmtree, folder, True)
    pem = serialization.Encoding.PEM
    (folder / "cert.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "ca.pem").write_bytes(ca.public_bytes(pem))
    (folder / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(folder / "cert.pem"), str(folder / "key.pem")


def ca_file() -> str:
    """The CA that signed the server certificate: what a client passes as ``ca_file``."""
    return str(Path(certificate()[0]).with_name("ca.pem"))


def server_context(cert_dir: str | None = None) -> ssl.SSLContext:
    """The server side of TLS; ``cert_dir`` reuses another process's certificate() folder."""
    cert, key = (
        certificate() if cert_dir is None else (f"{cert_dir}/cert.pem", f"{cert_dir}/key.pem")
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class StrictSMTP(SMTP):
    """aiosmtpd's SMTP plus the misbehaviours a test asks for (421, drop mid-DATA, stalls)."""

    def __init__(self, owner: SMTPServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.owner = owner
        self._pending: list[bytes] = []

    async def _handle_client(self) -> None:
        self.owner._live.add(self)
        if self.owner.connect_reply:
            await self.push(self.owner.connect_reply)
            if self.transport is not None:
                self.transport.close()
            return
        await self.owner._maybe_stall("connect")
        await super()._handle_client()

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if self.owner.helo_reply:
            await self._refuse(self.owner.helo_reply)
        else:
            await super().smtp_EHLO(hostname)

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if self.owner.helo_reply:
            await self._refuse(self.owner.helo_reply)
        else:
            await super().smtp_HELO(hostname)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if self.owner._take("drop_data") and self.envelope and self.envelope.rcpt_tos:
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            await self._reader.read(1)  # the client has started sending: now hang up on it
            await self._refuse(None)
            return
        if (
            await self.check_helo_needed()
            or await self.check_auth_needed("DATA")
            or self.envelope is None
        ):
            return
        if not self.envelope.rcpt_tos or arg:
            await self.push("503 Error: need RCPT command" if arg is None else "501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        content = await self._read_data()
        if content is None:
            status = "552 5.3.4 Error: too much mail data"
        elif max(map(len, content.split(b"\r\n"))) > 998:
            status = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
        else:
            self.envelope.original_content = self.envelope.content = content
            status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    async def _read_data(self) -> bytes | None:
        """Read up to CRLF.CRLF in big chunks and undo dot-stuffing (None: over the size limit).

        aiosmtpd reads DATA line by line, which caps a benchmark at ~600 msgs/s of 40 KB;
        this keeps its semantics (RFC 5321 4.5.2) at memory speed.
        """
        buf = bytearray(b"\r\n")  # so a terminator on the very first line is found too
        limit = (self.data_size_limit or 1 << 30) + 2
        scanned = 0
        while (end := buf.find(b"\r\n.\r\n", scanned)) < 0:
            scanned = max(0, len(buf) - 4)
            chunk = await self._reader.read(1 << 16)
            if not chunk:
                raise ConnectionResetError("connection lost during DATA")
            buf += chunk
        excess = bytes(buf[end + 5 :])
        if excess:  # pipelined commands after the end of data: hand them back to the reader
            self._reader._buffer[:0] = excess  # type: ignore[attr-defined]
        if end + 2 > limit:
            return None
        return bytes(buf[: end + 2]).replace(b"\r\n.", b"\r\n")[2:]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every address with email's full header parser; plain ones need not.
        match = _PLAIN_ADDR.fullmatch(arg)
        return (match[1], match[2]) if match else super()._getaddr(arg)

    async def push(self, status: str | bytes) -> None:
        """Reply, but hold replies back while pipelined commands are already waiting (RFC 2920).

        One write per group instead of one per command, like Postfix: a loopback send costs
        more than everything else the fixture does for a message.
        """
        data = status.encode() if isinstance(status, str) else status
        self._pending.append(data + b"\r\n")
        if b"\n" not in self._reader._buffer:  # type: ignore[attr-defined]
            await self._flush()

    async def _flush(self) -> None:
        if self._pending:
            self._writer.write(b"".join(self._pending))
            self._pending.clear()
            await self._writer.drain()

    async def _refuse(self, reply: str | None) -> None:
        if reply:
            await self.push(reply)
        await self._flush()
        if self.transport is not None:
            self.transport.close()


class Handler:
    """aiosmtpd hooks: scripted RCPT replies, the strict bare-LF check, recording."""

    def __init__(self, owner: SMTPServer) -> None:
        self.owner = owner

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.owner.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.owner._rcpt_reply(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        crlf = content.count(b"\r\n")
        if content.count(b"\n") != crlf or content.count(b"\r") != crlf:
            return "554 5.6.11 bare LF or CR received; lines must end with CRLF (RFC 5322 2.3)"
        await self.owner._maybe_stall("DATA")
        transport = server.transport
        if transport is None or transport.is_closing():
            return "421 4.4.2 client went away"  # never pushed: nobody is listening
        self.owner._accept(
            Received(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                content=content,
                tls=transport.get_extra_info("ssl_object") is not None,
                login=_login(session),
            )
        )
        return f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:12].upper()}"


def _login(session: Session) -> str | None:
    data = session.auth_data
    return data.login.decode() if isinstance(data, LoginPassword) else None


def header_of(content: bytes, name: bytes) -> str:
    head = content.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("ascii", "replace")
    return ""
