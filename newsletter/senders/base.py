"""The one Sender interface: a batch of messages in, one result per message out."""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from newsletter.errors import ConfigError


@runtime_checkable
class Message(Protocol):
    """A rendered edition addressed to one recipient; what every sender consumes.

    HTTP providers read the fields; SMTP, the outbox and raw-MIME APIs (SES) send ``as_bytes()``.
    """

    recipient: str  # bare address, e.g. "ada@example.org"
    name: str  # display name, may be empty or non-ASCII
    message_id: str  # "<…@…>", deterministic per (edition, recipient)

    @property
    def edition(self) -> int:
        """The edition number (0 for one-off mail such as confirmations)."""
        ...

    @property
    def subject(self) -> str: ...
    @property
    def from_header(self) -> str: ...
    @property
    def reply_to(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]:
        """Extra headers (List-Id, List-Unsubscribe, List-Unsubscribe-Post …), unencoded."""
        ...

    @property
    def html(self) -> str: ...
    @property
    def text(self) -> str: ...
    def as_bytes(self) -> bytes:
        """The whole RFC 5322 message with CRLF line endings, ready for SMTP DATA."""
        ...


class Outcome(enum.StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"  # retry later
    PERMANENT = "permanent"  # never retry this message


@dataclass(frozen=True, slots=True)
class Result:
    """What happened to one message."""

    message_id: str
    recipient: str
    outcome: Outcome
    provider_id: str = ""
    error: str = ""
    retry_after: float | None = None  # seconds, from Retry-After or the like
    hard_bounce: bool = False  # the address does not exist: suppress it

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.SENT


def sent(msg: Message, provider_id: str = "") -> Result:
    return Result(msg.message_id, msg.recipient, Outcome.SENT, provider_id=provider_id)


def transient(msg: Message, error: str, retry_after: float | None = None) -> Result:
    return Result(
        msg.message_id, msg.recipient, Outcome.TRANSIENT, error=error, retry_after=retry_after
    )


def permanent(msg: Message, error: str, hard_bounce: bool = False) -> Result:
    return Result(
        msg.message_id, msg.recipient, Outcome.PERMANENT, error=error, hard_bounce=hard_bounce
    )


class Sender(abc.ABC):
    """Owns only the wire. Policy (ledger, retries, rate limits) belongs to the dispatcher.

    ``send`` returns exactly one Result per message, in order. It raises
    ``PermanentSendError`` only when the sender as a whole cannot work (bad credentials,
    unknown account) so the run stops instead of failing every recipient one by one.
    Implementations are safe to call from several threads at once.
    """

    name: ClassVar[str]
    max_batch: ClassVar[int] = 1  # messages per send() call the provider accepts at once

    @classmethod
    @abc.abstractmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        """Build from the ``[sender.<name>]`` table; raise ConfigError listing every problem."""

    @abc.abstractmethod
    def send(self, messages: Sequence[Message]) -> list[Result]:
        """Deliver a batch; one Result per message, same order."""

    def close(self) -> None:  # noqa: B027 - most senders hold nothing
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def secret_from_env(
    options: Mapping[str, Any], key: str, default_env: str, environ: Mapping[str, str], section: str
) -> str:
    """Read a secret from the environment variable named by ``options[key]`` (never the file)."""
    env_name = options.get(key, default_env)
    if not isinstance(env_name, str) or not env_name:
        raise ConfigError(f"[sender.{section}] {key} must name an environment variable")
    value = environ.get(env_name, "")
    if not value:
        raise ConfigError(
            f"[sender.{section}]: environment variable {env_name} is not set",
            hint=f"export {env_name}=… (secrets never go in config.toml)",
        )
    return value


@dataclass(slots=True)
class SimpleMessage:
    """A self-contained Message for one-off mail (confirmations, tests) built with the stdlib."""

    recipient: str
    subject: str
    from_header: str
    html: str
    text: str
    message_id: str
    name: str = ""
    reply_to: str = ""
    edition: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    date: str = ""

    def as_bytes(self) -> bytes:
        msg = EmailMessage(policy=SMTP)
        msg["From"] = self.from_header
        msg["To"] = (
            formataddr((self.name, self.recipient))
            if self.name
            else str(Address(addr_spec=self.recipient))
        )
        msg["Subject"] = self.subject
        if self.reply_to:
            msg["Reply-To"] = self.reply_to
        msg["Date"] = self.date or format_datetime(_now())
        msg["Message-ID"] = self.message_id
        for key, value in self.headers.items():
            msg[key] = value
        msg.set_content(self.text, cte="quoted-printable")
        msg.add_alternative(self.html, subtype="html", cte="quoted-printable")
        return msg.as_bytes()


def _now() -> Any:
    from newsletter.clock import now

    return now()
