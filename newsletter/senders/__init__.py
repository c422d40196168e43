"""The sender registry: a name in ``[sender] kind`` → a Sender class, imported only when used."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.config import Config
    from newsletter.senders.base import Sender

# Lazy references so reading config.toml never imports httpx, smtplib or a provider module.
_REGISTRY: dict[str, str] = {
    "outbox": "newsletter.senders.outbox:OutboxSender",
    "memory": "newsletter.senders.memory:MemorySender",
    "smtp": "newsletter.senders.smtp:SMTPSender",
    "postmark": "newsletter.senders.postmark:PostmarkSender",
    "sendgrid": "newsletter.senders.sendgrid:SendGridSender",
    "mailgun": "newsletter.senders.mailgun:MailgunSender",
    "resend": "newsletter.senders.resend:ResendSender",
    "ses": "newsletter.senders.ses:SESSender",
}


def known_senders() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def sender_class(kind: str) -> type[Sender]:
    try:
        ref = _REGISTRY[kind]
    except KeyError:
        raise ConfigError(
            f"unknown sender {kind!r}", hint="known senders: " + ", ".join(known_senders())
        ) from None
    module, _, attr = ref.partition(":")
    cls: type[Sender] = getattr(importlib.import_module(module), attr)
    return cls


def create_sender(
    config: Config,
    kind: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> Sender:
    """Instantiate the configured sender (or ``kind``) with its ``[sender.<kind>]`` options."""
    kind = kind or config.sender.kind
    cls = sender_class(kind)
    options = dict(config.sender.options.get(kind, {}))
    options.setdefault("_root", str(config.root))
    return cls.from_options(options, os.environ if environ is None else environ, **kwargs)
