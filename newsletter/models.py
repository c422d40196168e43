"""The data flowing through the pipeline: Issue → Edition → RenderedEdition → Message."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One issue file: front matter plus sanitized body HTML (absolute URLs)."""

    path: str  # project-relative POSIX path, e.g. "issues/2024/alphageometry.md"
    slug: str
    title: str
    date: datetime  # aware, in the newsletter's time zone
    body_html: str
    digest: str  # sha256 of the file bytes: the cache and edition-hash key
    url: str | None = None
    authors: tuple[str, ...] = ()
    venue: str | None = None
    year: int | None = None
    code: str | None = None
    tags: tuple[str, ...] = ()
    image: str | None = None  # absolute URL
    summary: str | None = None
    edition: int | None = None
    section: str | None = None
    draft: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    lines: Mapping[str, int] = field(default_factory=dict)  # front-matter key -> line number


@dataclass(frozen=True, slots=True)
class EditionNote:
    """An editor's note for one edition: intro text and optional subject/preheader/title."""

    path: str
    key: str
    intro_html: str = ""
    subject: str | None = None
    preheader: str | None = None
    title: str | None = None
    digest: str = ""


@dataclass(frozen=True, slots=True)
class Section:
    """A titled group of issues inside an edition (title None: the unnamed section)."""

    title: str | None
    issues: tuple[Issue, ...]


@dataclass(frozen=True, slots=True)
class Edition:
    """What is rendered, archived, put in the feeds and sent: issues grouped by a rule."""

    key: str  # grouping key: "2024-W16", "2024-05", an issue slug, or the explicit number
    number: int  # stable: never changes once published (see editions.lock)
    title: str
    start: date
    end: date
    date: datetime  # publication date: the newest issue's date, or the note's
    issues: tuple[Issue, ...]
    sections: tuple[Section, ...]
    subject: str
    preheader: str
    intro_html: str = ""
    is_open: bool = False  # its period has not ended yet (still being collected)
    draft: bool = False  # contains only draft issues, or is open
    note_path: str | None = None

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag used in the edition, sorted, for feed categories."""
        return tuple(sorted({t for i in self.issues for t in i.tags}))


@dataclass(frozen=True, slots=True)
class RenderedEdition:
    """Everything an edition becomes; email parts keep per-recipient placeholders."""

    edition: Edition
    subject: str
    preheader: str
    email_html: str  # compiled by mrml; contains UNSUBSCRIBE_PLACEHOLDER
    email_text: str  # contains UNSUBSCRIBE_PLACEHOLDER
    web_html: str  # the archive page
    content_html: str  # the body used in feed entries (no email chrome)
    url: str  # absolute URL of the archive page


# The per-recipient placeholder left in email.html/email.txt; the sender fills it in.
UNSUBSCRIBE_PLACEHOLDER = "*|UNSUB|*"


class DeliveryStatus(enum.StrEnum):
    """Where one (edition, recipient) pair stands in the send ledger."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SUPPRESSED = "suppressed"


class SubscriberStatus(enum.StrEnum):
    """A subscriber's state; everything but ACTIVE is never mailed."""

    PENDING = "pending"  # double opt-in not confirmed yet
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One address on the list."""

    id: int
    email: str
    name: str = ""
    tags: tuple[str, ...] = ()
    status: SubscriberStatus = SubscriberStatus.ACTIVE
