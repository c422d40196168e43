"""Message assembly: one PreparedEdition per send, then cheap per-recipient messages."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import quote, urlsplit

from newsletter.config import Config
from newsletter.deliver.wire import SlottedBody
from newsletter.errors import ConfigError
from newsletter.models import UNSUBSCRIBE_PLACEHOLDER, RenderedEdition
from newsletter.tokens import TOKEN_LENGTH, Signer

_MARKER = "\x00" * TOKEN_LENGTH  # stands in for the token; never occurs in rendered text
_CRLF = re.compile(r"[\r\n\x00]")
# Characters quote() never escapes: a token made only of these (base64url tokens are) goes into
# headers as it is, so the per-recipient List-Unsubscribe header can be spliced from bytes.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")


def check_header(name: str, value: str) -> str:
    """Refuse header injection: a CR, LF or NUL in any header value is an error, not passed on."""
    if _CRLF.search(value):
        raise ConfigError(
            f"{name} header contains a line break or NUL: {value[:60]!r}",
            hint="header values come from titles, subjects and config: remove the line break there",
        )
    return value


def _encode(name: str, value: str) -> bytes:
    check_header(name, value)
    if value.isascii():
        return f"{name}: {value}\r\n".encode("ascii")
    # RFC 2047 encoded-words, folded with CRLF so no line exceeds 78 characters.
    return (
        f"{name}: {Header(value, 'utf-8', header_name=name).encode(linesep=chr(13) + chr(10))}"
        "\r\n".encode("ascii")
    )


def _address_header(name: str, value: str) -> bytes:
    display, addr = parseaddr(value)
    if not addr:
        raise ConfigError(f"{name}: not an email address: {value!r}")
    return _encode(name, formataddr((display, addr), charset="utf-8") if display else addr)


class PreparedEdition:
    """Everything about an edition's messages that does not depend on the recipient."""

    def __init__(
        self,
        config: Config,
        rendered: RenderedEdition,
        signer: Signer,
        *,
        sent_at: datetime,
        test: bool = False,
    ) -> None:
        ed = rendered.edition
        self.number = ed.number
        self.signer = signer
        self.test = test
        self.subject = ("[TEST] " if test else "") + check_header("Subject", rendered.subject)
        self.from_header = check_header("From", config.from_header)
        self.reply_to = check_header("Reply-To", config.email.reply_to)
        self.list_id = check_header("List-Id", config.list_id)
        self.unsub_prefix = config.unsubscribe_prefix
        self.unsub_mailto = config.email.unsubscribe_mailto
        self.domain = parseaddr(self.from_header)[1].rpartition("@")[2] or (
            urlsplit(config.base_url).hostname or "localhost"
        )
        self.html_template = rendered.email_html.replace(
            UNSUBSCRIBE_PLACEHOLDER, self.unsub_prefix + _MARKER
        )
        self.text_template = rendered.email_text.replace(
            UNSUBSCRIBE_PLACEHOLDER, self.unsub_prefix + _MARKER
        )
        self.boundary = (
            "=_nl_"
            + hashlib.sha256(f"{ed.key}/{ed.number}/{rendered.subject}".encode()).hexdigest()[:28]
        )
        head = b"".join(
            [
                _address_header("From", self.from_header),
                _encode("Subject", self.subject),
                _encode("Date", format_datetime(sent_at)),
                _address_header("Reply-To", self.reply_to) if self.reply_to else b"",
                _encode("List-Id", self.list_id),
            ]
        )
        self._head = head
        self._mime = (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            b"MIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="'
            + self.boundary.encode()
            + b'"\r\n\r\n'
        )
        part = b"--" + self.boundary.encode() + b"\r\n"
        self._text_head = part + (
            b'Content-Type: text/plain; charset="utf-8"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n"
        )
        self._html_head = part + (
            b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        )
        self._tail = b"--" + self.boundary.encode() + b"--\r\n"
        marker = _MARKER.encode()
        self._text = SlottedBody(self.text_template.replace("\n", "\r\n").encode(), marker)
        self._html = SlottedBody(self.html_template.replace("\n", "\r\n").encode(), marker)
        # List-Unsubscribe as bytes around the token, used when the header needs no encoding
        # (ASCII, no line breaks); otherwise every message takes the general path of _encode.
        self._unsub_parts: tuple[bytes, bytes, bytes] | None = None
        fixed = self.unsub_prefix + self.unsub_mailto
        if fixed.isascii() and not _CRLF.search(fixed):
            mailto = (
                f">, <mailto:{self.unsub_mailto}?subject=unsubscribe%20"
                if self.unsub_mailto
                else ""
            )
            self._unsub_parts = (
                f"List-Unsubscribe: <{self.unsub_prefix}".encode(),
                mailto.encode(),
                b">\r\n",
            )

    def message(self, recipient: str, name: str = "", subscriber_id: int = 0) -> EditionMessage:
        # Checked here, not only in as_bytes(): HTTP APIs take the address and name as JSON and
        # never serialize our headers, and a damaged database or --to bypasses validation.
        check_header("To", recipient)
        check_header("To", name)
        token = self.signer.make("unsubscribe", subscriber_id, self.number, recipient)
        return EditionMessage(self, recipient, name, subscriber_id, token)

    def message_id(self, recipient: str) -> str:
        digest = hashlib.sha256(f"{self.list_id}\0{recipient.lower()}".encode()).hexdigest()[:24]
        kind = "test" if self.test else "e"
        return f"<{kind}{self.number}.{digest}@{self.domain}>"


class EditionMessage:
    """One recipient's message; satisfies the senders' Message protocol."""

    __slots__ = ("_p", "message_id", "name", "recipient", "subscriber_id", "token")
    # as_bytes() is CRLF-only, ends with CRLF, and no line starts with "." (headers, MIME
    # boundaries and base64 lines never do), so SMTP may send it without dot-stuffing.
    wire_safe = True

    def __init__(
        self, prepared: PreparedEdition, recipient: str, name: str, subscriber_id: int, token: str
    ) -> None:
        self._p = prepared
        self.recipient = recipient
        self.name = name
        self.subscriber_id = subscriber_id
        self.token = token
        self.message_id = prepared.message_id(recipient)

    @property
    def edition(self) -> int:
        return self._p.number

    @property
    def subject(self) -> str:
        return self._p.subject

    @property
    def from_header(self) -> str:
        return self._p.from_header

    @property
    def reply_to(self) -> str:
        return self._p.reply_to

    @property
    def unsubscribe_url(self) -> str:
        return self._p.unsub_prefix + self.token

    @property
    def headers(self) -> Mapping[str, str]:
        return {
            "List-Id": self._p.list_id,
            "List-Unsubscribe": self._list_unsubscribe(),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def _list_unsubscribe(self) -> str:
        value = f"<{self.unsubscribe_url}>"
        if self._p.unsub_mailto:
            token = self.token
            # quote() is slow and leaves a URL-safe token as it is: skip it when it would.
            subject = (
                "unsubscribe%20" + token
                if _URL_SAFE.fullmatch(token)
                else quote(f"unsubscribe {token}")
            )
            value += f", <mailto:{self._p.unsub_mailto}?subject={subject}>"
        return value

    def _list_unsubscribe_header(self, token: bytes) -> list[bytes]:
        parts = self._p._unsub_parts
        if parts is None or not _URL_SAFE.fullmatch(self.token):
            return [_encode("List-Unsubscribe", self._list_unsubscribe())]
        head, mailto, end = parts
        return [head, token, mailto, token, end] if mailto else [head, token, end]

    @property
    def html(self) -> str:
        return self._p.html_template.replace(_MARKER, self.token)

    @property
    def text(self) -> str:
        return self._p.text_template.replace(_MARKER, self.token)

    def as_bytes(self) -> bytes:
        p = self._p
        token = self.token.encode("ascii")
        to = (
            formataddr((self.name, self.recipient), charset="utf-8")
            if self.name
            else self.recipient
        )
        # One join over every piece: the ~40 KB body is copied once per message, not twice.
        return b"".join(
            [
                p._head,
                _encode("To", to),
                b"Message-ID: ",
                self.message_id.encode("ascii"),
                b"\r\n",
                *self._list_unsubscribe_header(token),
                p._mime,
                p._text_head,
                *p._text.parts(token),
                p._html_head,
                *p._html.parts(token),
                p._tail,
            ]
        )
