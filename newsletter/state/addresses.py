"""Subscriber input checks: addresses (email_validator, no DNS), display names and tags."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import NewsletterError

MAX_NAME = 256
MAX_TAG = 64
# Unicode Cc (C0, DEL, C1) plus the line and paragraph separators some mail clients break on.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class SubscriberError(NewsletterError):
    """An address, name or tag is invalid, or a change to the list is not allowed."""


@dataclass(frozen=True, slots=True)
class Address:
    """A validated address: ``email`` as given (trimmed) and ``key``, the dedupe key."""

    email: str
    key: str


def check_address(email: str) -> Address:
    """Validate syntax (no DNS lookup); raise SubscriberError saying what is wrong."""
    given = email.strip()
    try:
        valid = validate_email(given, check_deliverability=False)
    except EmailNotValidError as exc:
        raise SubscriberError(f"invalid email address {given!r}: {exc}") from None
    # The normalized form folds IDN spellings (xn--… vs Unicode) and NFC; lower() folds case,
    # which every real mailbox provider ignores even though RFC 5321 allows otherwise.
    return Address(email=given, key=valid.normalized.lower())


def address_key(email: str) -> str:
    """The dedupe key of an address; a best effort for invalid input (lookups only)."""
    try:
        return check_address(email).key
    except SubscriberError:
        return email.strip().lower()


def check_name(name: str) -> str:
    """A display name safe for a To: header: no line breaks or control characters."""
    name = name.strip()
    bad = _CONTROL.search(name)
    if bad:
        raise SubscriberError(
            f"name {name!r} contains a line break or control character (U+{ord(bad.group()):04X})"
        )
    if len(name) > MAX_NAME:
        raise SubscriberError(f"name is longer than {MAX_NAME} characters")
    return name


def parse_tags(tags: str | Iterable[str]) -> tuple[str, ...]:
    """Tags from "a; b,c" or a sequence: trimmed, lower-cased, deduplicated, order kept."""
    parts = tags.replace(";", ",").split(",") if isinstance(tags, str) else list(tags)
    out: dict[str, None] = {}
    for part in parts:
        tag = part.strip().lower()
        if not tag:
            continue
        if _CONTROL.search(tag) or "," in tag or ";" in tag:
            raise SubscriberError(f"tag {tag!r} contains a separator or control character")
        if len(tag) > MAX_TAG:
            raise SubscriberError(f"tag {tag[:20]!r}… is longer than {MAX_TAG} characters")
        out[tag] = None
    return tuple(out)
