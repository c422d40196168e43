"""The dispatcher: workers pull pending deliveries, send, and checkpoint each one in the ledger.

Policy lives here, the wire in the senders. Guarantees (docs/reliability.md):
- a delivery is recorded as sent only after the server or API accepted it;
- each worker waits for that record to be committed before it sends anything else, so after a
  crash at most ``concurrency × batch`` accepted messages can lack their record (and be sent
  again on resume); with SMTP (batch 1) that is at most one message per connection;
- transient failures stay pending and are retried in later passes with exponential backoff and
  jitter (Retry-After honoured); permanent ones are recorded with their reason;
- after ``max_consecutive_errors`` failures in a row the run stops instead of burning the list.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from newsletter.deliver.ratelimit import RateLimiter, Timer
from newsletter.errors import PermanentSendError
from newsletter.models import DeliveryStatus
from newsletter.senders.base import Message, Outcome, Result, Sender
from newsletter.state.ledger import DeliveryOutcome, PendingDelivery


class WorkSource(Protocol):
    """Where deliveries come from and where their outcomes go (the ledger, or a dry run)."""

    def pages(self) -> Iterator[Sequence[PendingDelivery]]: ...
    def record(self, outcomes: Sequence[DeliveryOutcome]) -> None: ...


@dataclass(frozen=True)
class Policy:
    concurrency: int = 4
    batch_size: int = 1
    max_attempts: int = 5
    max_consecutive_errors: int = 50
    backoff_base: float = 2.0  # seconds before the second pass; doubles each pass
    backoff_max: float = 300.0
    budget: int | None = None  # messages this run may send ([sender] hourly/daily caps)
    budget_reason: str = ""


@dataclass
class RunReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0  # transient failures left pending for a later pass
    passes: int = 0
    stopped: str = ""  # why the run stopped early ("" when it finished)
    errors: list[str] = field(default_factory=list)


class _Committer:
    """Group commit: outcomes from all workers go to the ledger in one transaction each round.

    A worker that finds no commit running takes everything queued so far and commits it; the
    workers that hand in outcomes meanwhile wait and go together in the next transaction. One
    transaction at a time keeps SQLite (one writer) and PostgreSQL runs orderly, and with many
    workers the fsync per commit is shared instead of paid per batch. Every caller returns only
    once its own outcomes are durable, and gets the commit's exception if it failed.
    """

    def __init__(self, source: WorkSource) -> None:
        self.source = source
        self.cond = threading.Condition()
        self.queued: list[DeliveryOutcome] = []
        self.round = 0  # the round now collecting outcomes
        self.done = -1  # the last round that finished (committed or failed)
        self.committing = False
        self.failures: dict[int, BaseException] = {}

    def record(self, outcomes: Sequence[DeliveryOutcome]) -> None:
        with self.cond:
            self.queued.extend(outcomes)
            mine = self.round
            while self.committing and self.done < mine:
                self.cond.wait()
            if self.done >= mine:  # another worker committed our round
                failure = self.failures.get(mine)
                if failure is not None:
                    raise failure
                return
            self.committing = True
            batch, self.queued = self.queued, []
            self.round += 1
        failure = None
        try:
            self.source.record(batch)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            with self.cond:
                if failure is not None:
                    self.failures[mine] = failure
                self.done = mine
                self.committing = False
                self.cond.notify_all()


class Dispatcher:
    def __init__(
        self,
        source: WorkSource,
        sender: Sender,
        build: Callable[[PendingDelivery], Message],
        policy: Policy,
        *,
        limiter: RateLimiter | None = None,
        stop: threading.Event | None = None,
        progress: Callable[[RunReport], None] | None = None,
        timer: Timer | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.source = source
        self.sender = sender
        self.build = build
        self.policy = policy
        self.limiter = limiter or RateLimiter(None)
        self.stop = stop or threading.Event()
        self.progress = progress
        self.timer = timer or Timer()
        self.rng = rng or random.Random(0)
        self.report = RunReport()
        self.committer = _Committer(source)
        self.lock = threading.Lock()
        self.consecutive = 0
        self.retry_after = 0.0
        self.abort = threading.Event()
        self.crash: BaseException | None = None
        self.budget = policy.budget

    def run(self) -> RunReport:
        for attempt in range(self.policy.max_attempts):
            if attempt:
                delay = max(self.retry_after, self._backoff(attempt))
                self.retry_after = 0.0
                if self._wait(delay):
                    break
            retried_before = self.report.retried
            self.report.passes += 1
            self._pass(final=attempt == self.policy.max_attempts - 1)
            if self.abort.is_set() or self.stop.is_set():
                break
            if self.report.retried == retried_before:
                break  # nothing transient left
        if self.crash is not None:
            raise self.crash  # a bug in a sender or here: keep its traceback
        if self.stop.is_set() and not self.report.stopped:
            self.report.stopped = "stopped by signal; run the same command again to resume"
        return self.report

    def _backoff(self, attempt: int) -> float:
        base = min(self.policy.backoff_max, self.policy.backoff_base * 2.0 ** (attempt - 1))
        jitter: float = self.rng.random()
        return base * (0.5 + jitter / 2)  # "equal jitter": spread retries out

    def _wait(self, seconds: float) -> bool:
        """Sleep in small steps so a stop request is honoured; True if stopped."""
        left = seconds
        while left > 0:
            if self.stop.is_set():
                return True
            step = min(left, 0.5)
            self.timer.sleep(step)
            left -= step
        return self.stop.is_set()

    def _pass(self, final: bool) -> None:
        work: queue.Queue[list[PendingDelivery] | None] = queue.Queue(
            maxsize=self.policy.concurrency * 2
        )
        workers = [
            threading.Thread(target=self._worker, args=(work, final), daemon=True, name=f"send-{i}")
            for i in range(self.policy.concurrency)
        ]
        for w in workers:
            w.start()
        try:
            size = max(1, min(self.policy.batch_size, self.sender.max_batch))
            for page in self.source.pages():
                for i in range(0, len(page), size):
                    while not self._halted():
                        try:
                            work.put(list(page[i : i + size]), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if self._halted():
                        break
                if self._halted():
                    break
        finally:
            for _ in workers:
                work.put(None)
            for w in workers:
                w.join()

    def _halted(self) -> bool:
        return self.stop.is_set() or self.abort.is_set()

    def _worker(self, work: queue.Queue[list[PendingDelivery] | None], final: bool) -> None:
        try:
            self._work(work, final)
        except BaseException as exc:  # surfaced by run(); the other workers stop cleanly
            self.crash = exc
            self.abort.set()
            while work.get() is not None:
                pass

    def _work(self, work: queue.Queue[list[PendingDelivery] | None], final: bool) -> None:
        while (batch := work.get()) is not None:
            if self._halted() or not self.limiter.acquire(len(batch), self.stop):
                continue  # drain without sending: the rows stay pending for the next run
            batch = self._within_budget(batch)
            if not batch:
                continue
            messages = [self.build(row) for row in batch]
            try:
                results = self.sender.send(messages)
            except PermanentSendError as exc:
                with self.lock:
                    self.report.stopped = f"sender failed: {exc.message}"
                    self.abort.set()
                continue
            self.committer.record(self._outcomes(batch, results, final))
            if self.progress:
                self.progress(self.report)

    def _within_budget(self, batch: list[PendingDelivery]) -> list[PendingDelivery]:
        """Trim a batch to what the sending caps still allow; stop the run once they are used."""
        if self.budget is None:
            return batch
        with self.lock:
            allowed = batch[: max(self.budget, 0)]
            self.budget -= len(allowed)
            if len(allowed) < len(batch) and not self.abort.is_set():
                self.report.stopped = (
                    f"{self.policy.budget_reason} reached; the rest stay "
                    "pending: run the same command again later"
                )
                self.abort.set()
        return allowed

    def _outcomes(
        self, batch: Sequence[PendingDelivery], results: Sequence[Result], final: bool
    ) -> list[DeliveryOutcome]:
        if len(results) != len(batch):
            raise RuntimeError(
                f"{self.sender.name} returned {len(results)} results for {len(batch)} messages"
            )
        outcomes = []
        with self.lock:
            for row, res in zip(batch, results, strict=True):
                if res.outcome is Outcome.SENT:
                    self.report.sent += 1
                    self.consecutive = 0
                    outcomes.append(
                        DeliveryOutcome(row.id, DeliveryStatus.SENT, provider_id=res.provider_id)
                    )
                    continue
                self.consecutive += 1
                gave_up = (
                    res.outcome is Outcome.PERMANENT
                    or final
                    or row.attempts + 1 >= self.policy.max_attempts
                )
                if gave_up:
                    self.report.failed += 1
                    status = DeliveryStatus.FAILED
                    error = (
                        res.error
                        if res.outcome is Outcome.PERMANENT
                        else f"gave up after {row.attempts + 1} attempts: {res.error}"
                    )
                else:
                    self.report.retried += 1
                    status, error = DeliveryStatus.PENDING, res.error
                    if res.retry_after:
                        self.retry_after = max(self.retry_after, res.retry_after)
                        self.limiter.pause(res.retry_after)
                outcomes.append(
                    DeliveryOutcome(row.id, status, error=error[:500], hard_bounce=res.hard_bounce)
                )
                if len(self.report.errors) < 20:
                    self.report.errors.append(f"{row.email}: {res.error}")
            limit = self.policy.max_consecutive_errors
            if self.consecutive >= limit and not self.abort.is_set():
                self.report.stopped = (
                    f"stopped after {self.consecutive} consecutive errors "
                    f"(max_consecutive_errors = {limit}); last: "
                    f"{self.report.errors[-1] if self.report.errors else ''}"
                )
                self.abort.set()
        return outcomes
