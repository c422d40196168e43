"""`newsletter send`: check, render once, enqueue in the ledger, dispatch, reconcile."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newsletter import clock
from newsletter.checks import CheckResult, lint_edition
from newsletter.config import Config
from newsletter.deliver.dispatch import Dispatcher, Policy, RunReport
from newsletter.deliver.message import PreparedEdition
from newsletter.deliver.ratelimit import RateLimiter, Timer
from newsletter.errors import NewsletterError, SendError
from newsletter.models import DeliveryStatus, Edition, RenderedEdition, SubscriberStatus
from newsletter.pipeline import EditionRenderer, find_edition, load_and_group
from newsletter.senders import create_sender
from newsletter.senders.base import Message, Sender
from newsletter.state import subscribers
from newsletter.state.db import Database, open_database
from newsletter.state.ledger import DeliveryOutcome, Ledger, LedgerSummary, PendingDelivery
from newsletter.tokens import Signer, load_secret


@dataclass
class SendPlan:
    """What a send would do; shown before asking for confirmation."""

    edition: Edition
    rendered: RenderedEdition
    sender: str
    recipients: int
    check: CheckResult


@dataclass
class SendReport:
    edition: int
    sender: str
    enqueued: int = 0
    run: RunReport = field(default_factory=RunReport)
    summary: LedgerSummary | None = None
    test_results: list[str] = field(default_factory=list)


class LedgerSource:
    """Pending deliveries from the ledger, outcomes back into it."""

    def __init__(self, ledger: Ledger, edition: int, page_size: int = 1000) -> None:
        self.ledger = ledger
        self.edition = edition
        self.page_size = page_size

    def pages(self) -> Iterator[Sequence[PendingDelivery]]:
        after = 0
        while page := self.ledger.pending(self.edition, after_id=after, limit=self.page_size):
            yield page
            after = page[-1].id

    def record(self, outcomes: Sequence[DeliveryOutcome]) -> None:
        self.ledger.record(self.edition, outcomes)


class DryRunSource:
    """Every active subscriber, outcomes only counted: a dry run never touches the ledger."""

    def __init__(self, db: Database, page_size: int = 1000) -> None:
        self.db = db
        self.page_size = page_size
        self.counts: dict[str, int] = {}

    def pages(self) -> Iterator[Sequence[PendingDelivery]]:
        page: list[PendingDelivery] = []
        for sub in subscribers.iter_subscribers(self.db, status=SubscriberStatus.ACTIVE):
            page.append(PendingDelivery(sub.id, sub.id, sub.email, sub.name, 0))
            if len(page) >= self.page_size:
                yield page
                page = []
        if page:
            yield page

    def record(self, outcomes: Sequence[DeliveryOutcome]) -> None:
        for o in outcomes:
            self.counts[o.status] = self.counts.get(o.status, 0) + 1


def _policy(config: Config, sender: Sender, ledger: Ledger | None, now: datetime) -> Policy:
    s = config.sender
    budget: int | None = None
    reason = ""
    # Caps count every message sent in the window, across editions and earlier runs.
    for cap, window, name in (
        (s.hourly_cap, timedelta(hours=1), "hourly_cap"),
        (s.daily_cap, timedelta(days=1), "daily_cap"),
    ):
        if cap is None or ledger is None:
            continue
        left = max(0, cap - ledger.sent_since(now - window))
        if budget is None or left < budget:
            budget, reason = left, f"[sender] {name} of {cap}"
    return Policy(
        concurrency=s.concurrency,
        batch_size=min(s.batch_size, sender.max_batch),
        max_attempts=s.max_attempts,
        max_consecutive_errors=s.max_consecutive_errors,
        budget=budget,
        budget_reason=reason,
    )


def plan_send(
    config: Config,
    number: int,
    *,
    db: Database,
    sender_kind: str | None = None,
    now: datetime | None = None,
    allow_open: bool = False,
) -> SendPlan:
    """Load, render and check one edition; count who would receive it."""
    now = now or clock.now()
    grouping = load_and_group(config, drafts=allow_open, now=now)
    edition = find_edition(grouping, number)
    rendered = EditionRenderer(config, grouping).render(edition)
    check = CheckResult(editions=1, issues=len(edition.issues))
    lint_edition(config, rendered, check, now)
    count = subscribers.count(db).get(SubscriberStatus.ACTIVE.value, 0)
    return SendPlan(edition, rendered, sender_kind or config.sender.kind, count, check)


def send_edition(
    config: Config,
    plan: SendPlan,
    *,
    db: Database,
    sender: Sender | None = None,
    dry_run: bool = False,
    to: Sequence[str] = (),
    retry_failed: bool = False,
    environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    progress: Callable[[RunReport], None] | None = None,
    timer: Timer | None = None,
    now: datetime | None = None,
) -> SendReport:
    """Deliver a planned edition through the ledger (or as a test/dry run)."""
    errors = plan.check.errors()
    if errors:
        raise SendError(
            f"edition {plan.edition.number} failed {errors} pre-send check(s)",
            hint="run `newsletter check` to see them",
            problems=[f.problem for f in plan.check.findings if f.level == "error"],
        )
    if plan.edition.draft and not to:
        raise SendError(
            f"edition {plan.edition.number} is a draft or still open",
            hint="wait until its period ends, or test it with --to ADDRESS",
        )
    secret = secrets.token_bytes(32) if dry_run else load_secret(config.email.secret_env, environ)
    prepared = PreparedEdition(
        config, plan.rendered, Signer(secret), sent_at=now or clock.now(), test=bool(to)
    )
    kind = "outbox" if dry_run else plan.sender
    if sender is None:
        sender = create_sender(config, kind, environ=environ)
    report = SendReport(edition=plan.edition.number, sender=sender.name)
    with sender:
        if to:
            messages: list[Message] = [prepared.message(addr) for addr in to]
            for res in sender.send(messages):
                report.test_results.append(
                    f"{res.recipient}: {res.outcome.value}"
                    + (f" ({res.error})" if res.error else "")
                )
            return report
        source: LedgerSource | DryRunSource
        if dry_run:
            source = DryRunSource(db)
        else:
            ledger = Ledger(db)
            if retry_failed:
                ledger.reset_failed(plan.edition.number)
            report.enqueued = ledger.enqueue(plan.edition.number)
            ledger.mark_started(plan.edition.number, sender.name)
            source = LedgerSource(ledger, plan.edition.number)

        def build(row: PendingDelivery) -> Message:
            return prepared.message(row.email, row.name, row.subscriber_id)

        limiter = RateLimiter(config.sender.rate, timer=timer)
        policy = _policy(config, sender, None if dry_run else Ledger(db), now or clock.now())
        dispatcher = Dispatcher(
            source,
            sender,
            build,
            policy,
            limiter=limiter,
            stop=stop,
            progress=progress,
            timer=timer,
        )
        report.run = dispatcher.run()
        if not dry_run:
            ledger = Ledger(db)
            report.summary = ledger.summary(plan.edition.number)
            if report.summary.settled:
                ledger.mark_finished(plan.edition.number)
    return report


def open_state(config: Config) -> Database:
    return open_database(config.database_url, busy_timeout=config.state.busy_timeout)


__all__ = [
    "DeliveryStatus",
    "DryRunSource",
    "LedgerSource",
    "NewsletterError",
    "SendPlan",
    "SendReport",
    "open_state",
    "plan_send",
    "send_edition",
]
