"""Wire faults during whole sends: a scripted SMTP server and a scripted Postmark API.

Every test sends one edition to 40 subscribers through plan_send/send_edition (virtual time for
backoff), then checks what the server really accepted (one copy per recipient), what the ledger
says, and that `newsletter status` adds up to the recipient count.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from newsletter import clock
from newsletter.config import Config
from newsletter.deliver.ratelimit import VirtualTimer
from newsletter.deliver.send import SendReport, open_state, plan_send, send_edition
from newsletter.models import SubscriberStatus
from newsletter.senders.postmark import PostmarkSender
from newsletter.state import subscribers
from newsletter.state.db import Database
from tests.conftest import MakeProject, issue
from tests.reliability import SECRET, Status, status
from tests.smtpd_fixture import SMTPServer

RECIPIENTS = 40
ADDRESSES = [f"reader{i:02d}@example.org" for i in range(RECIPIENTS)]
SEND_ENV = {"NEWSLETTER_SECRET": SECRET}


@dataclass
class Site:
    config: Config
    db: Database
    timer: VirtualTimer = field(default_factory=VirtualTimer)

    def send(self, **kw: Any) -> SendReport:
        plan = plan_send(self.config, 1, db=self.db)
        return send_edition(self.config, plan, db=self.db, environ=SEND_ENV, timer=self.timer, **kw)

    def failures(self) -> dict[str, str]:
        from newsletter.state.ledger import Ledger

        return dict(Ledger(self.db).summary(1).failures)


@pytest.fixture
def make_site(make_project: MakeProject, frozen_now: object) -> Iterator[Callable[..., Site]]:
    opened: list[Database] = []

    def make(sender: str) -> Site:
        config = make_project(
            {"issues/a.md": issue("Paper", "2024-04-09", "Body.", url="https://arxiv.org/abs/1")},
            extra_config=sender,
        )
        db = open_state(config)
        opened.append(db)
        for address in ADDRESSES:
            subscribers.add(db, address)
        return Site(config, db)

    yield make
    for db in opened:
        db.close()


class Servers:
    """Starts SMTP servers (or subclasses of it) and stops every one afterwards."""

    def __init__(self) -> None:
        self.started: list[SMTPServer] = []

    def start(self, cls: type[SMTPServer] = SMTPServer, **options: Any) -> SMTPServer:
        server = cls(starttls=False, **options).start()
        self.started.append(server)
        return server


@pytest.fixture
def servers() -> Iterator[Servers]:
    made = Servers()
    yield made
    for server in made.started:
        server.stop()


def smtp_config(server: SMTPServer, timeout: float = 5.0) -> str:
    return f"""
[sender]
kind = "smtp"
concurrency = 4

[sender.smtp]
host = "{server.host}"
port = {server.port}
security = "none"
helo = "wire-faults"
timeout = {timeout}
"""


def subscriber_status(db: Database, address: str) -> SubscriberStatus:
    found = subscribers.get(db, address)
    assert found is not None, address
    return found.status


def accepted(server: SMTPServer) -> Counter[str]:
    return Counter(server.recipients)


def assert_everyone_once(server: SMTPServer, site: Site, *, except_: Collection[str] = ()) -> None:
    counts = accepted(server)
    assert set(counts) == set(ADDRESSES) - set(except_), sorted(set(ADDRESSES) ^ set(counts))
    assert max(counts.values()) == 1, [a for a, n in counts.items() if n > 1]


class RefusesFirstConnections(SMTPServer):
    """Answers the first ``refused`` sessions with a 421 greeting, then behaves.

    Decided per session (its asyncio task): the shared connection counter may already count
    the next connection by the time a session reads its greeting.
    """

    refused = 3

    def start(self) -> RefusesFirstConnections:
        super().start()
        with self._lock:
            self._sessions: dict[object, bool] = {}  # forget the controller's readiness probe
        return self

    @property
    def connect_reply(self) -> str:
        task = asyncio.current_task() if _in_loop() else None
        if task is None:
            return self._reply
        with self._lock:
            decided = self.__dict__.setdefault("_sessions", {})
            if task not in decided:
                decided[task] = len(decided) < self.refused
            refuse = decided[task]
        return "421 4.3.2 Service shutting down, try later" if refuse else self._reply

    @connect_reply.setter
    def connect_reply(self, value: str) -> None:
        self._reply = value


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# --- SMTP ------------------------------------------------------------------------------------


def test_421_at_connect_is_retried_later(servers: Servers, make_site: Callable[..., Site]) -> None:
    server = servers.start(RefusesFirstConnections)
    site = make_site(smtp_config(server))
    report = site.send()
    assert report.run.retried == RefusesFirstConnections.refused
    assert report.run.passes == 2 and site.timer.slept >= 1.0  # backoff: ≥ 2 s × 0.5 jitter
    assert_everyone_once(server, site)
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS, 0, 0, 0)


@pytest.mark.parametrize(
    ("reply", "times"),
    [
        ("451 4.7.1 Greylisted, please try again later", 2),
        ("452 4.5.3 Too many recipients", 1),
        ("450 4.2.0 Mailbox busy", 3),
    ],
)
def test_temporary_rcpt_refusals_are_retried_with_backoff(
    servers: Servers, make_site: Callable[..., Site], reply: str, times: int
) -> None:
    server = servers.start()
    flaky = ADDRESSES[3:40:7]
    for address in flaky:
        server.reject_rcpt(address, reply, times=times)
    site = make_site(smtp_config(server))
    report = site.send()
    assert report.run.retried == len(flaky) * times
    assert report.run.passes == times + 1
    # Exponential backoff with equal jitter: pass k waits ≥ 2^(k-1) × 2 s × 0.5.
    assert site.timer.slept >= sum(2 ** (k - 1) for k in range(1, times + 1))
    assert_everyone_once(server, site)
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS, 0, 0, 0)


def test_permanent_rcpt_refusals_are_recorded_and_hard_bounces_suppressed(
    servers: Servers, make_site: Callable[..., Site]
) -> None:
    server = servers.start()
    unknown = ADDRESSES[5:8]
    for address in unknown:
        server.reject_rcpt(
            address,
            f"550 5.1.1 <{address}>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
        )
    server.reject_rcpt(ADDRESSES[9], "550 5.7.1 Message rejected by policy")
    site = make_site(smtp_config(server))
    report = site.send()
    assert report.run.retried == 0 and report.run.passes == 1
    refused = {*unknown, ADDRESSES[9]}
    assert_everyone_once(server, site, except_=refused)
    failures = site.failures()
    assert set(failures) == refused
    for address in unknown:
        assert "550 5.1.1" in failures[address] and "User unknown" in failures[address]
        assert subscriber_status(site.db, address) is SubscriberStatus.BOUNCED
        assert subscribers.suppression(site.db, address)
    assert "550 5.7.1" in failures[ADDRESSES[9]]  # refused, but the mailbox exists: kept
    assert subscriber_status(site.db, ADDRESSES[9]) is SubscriberStatus.ACTIVE
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS - 4, 4, 0, 0)
    again = site.send(retry_failed=True)  # the bounced are suppressed now; 5.7.1 is retried
    assert again.run.sent == 0 and again.run.failed == 1
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS - 4, 1, 0, 3)


def test_connections_dropped_mid_data_lose_and_duplicate_nothing(
    servers: Servers, make_site: Callable[..., Site]
) -> None:
    server = servers.start()
    server.drop_data(times=9)
    site = make_site(smtp_config(server))
    report = site.send()
    assert report.run.sent == RECIPIENTS
    assert server.accepted == RECIPIENTS
    assert server.connections >= 4 + 9 // 2  # each drop costs a connection (one retry each)
    assert_everyone_once(server, site)
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS, 0, 0, 0)


def test_a_server_stalling_past_the_timeout_is_abandoned_and_retried(
    servers: Servers, make_site: Callable[..., Site]
) -> None:
    timeout = 0.5
    server = servers.start()
    server.stall("DATA")  # every session hangs after the message data, before its 250
    site = make_site(smtp_config(server, timeout=timeout))
    releaser = threading.Timer(timeout * 1.6, server.release)
    releaser.start()
    started = time.monotonic()
    try:
        report = site.send()
    finally:
        releaser.cancel()
    elapsed = time.monotonic() - started
    assert report.run.retried >= 4  # at least the first message of each of the 4 workers
    assert any("timed out" in e for e in report.run.errors), report.run.errors
    assert report.run.sent == RECIPIENTS and elapsed < 10
    # The server had the stalled messages in full; their sessions were gone when it resumed,
    # so it dropped them ("421 client went away") instead of delivering a second copy.
    assert_everyone_once(server, site)
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS, 0, 0, 0)


# --- HTTP (Postmark) ------------------------------------------------------------------------

TOKEN = "pm-wire-faults-token"
POSTMARK_CONFIG = """
[sender]
kind = "postmark"
concurrency = 2
batch_size = 8
"""

Respond = Callable[[int, list[dict[str, Any]]], httpx.Response | None]


class PostmarkAPI:
    """A MockTransport handler: ``respond(request_number, batch)`` may script a failure;
    otherwise every message is accepted. ``accepted`` counts only messages the API really
    took (ErrorCode 0 in a readable 200 answer)."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.requests = 0
        self.accepted: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Postmark-Server-Token"] == TOKEN
        batch = json.loads(request.content)
        with self.lock:
            self.requests += 1
            number = self.requests
        answer = self.respond(number, batch)
        if answer is None:
            answer = httpx.Response(200, json=[self.ok(m) for m in batch])
        if answer.status_code == 200:
            try:
                items = json.loads(answer.content)
            except ValueError:
                items = []
            with self.lock:
                for item in items:
                    if item["ErrorCode"] == 0:
                        self.accepted[item["To"]] += 1
        return answer

    @staticmethod
    def ok(message: dict[str, Any]) -> dict[str, Any]:
        return {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": f"pm-{message['To']}",
            "To": message["To"],
            "SubmittedAt": "2024-06-01T00:00:00Z",
        }

    def sender(self) -> PostmarkSender:
        return PostmarkSender(TOKEN, client=httpx.Client(transport=httpx.MockTransport(self)))


def _first(count: int, answer: Callable[[], httpx.Response]) -> Respond:
    return lambda number, batch: answer() if number <= count else None


@pytest.mark.parametrize("retry_after", ["30", "http-date"])
def test_429_waits_at_least_retry_after_then_delivers(
    make_site: Callable[..., Site], retry_after: str
) -> None:
    seconds = 30.0 if retry_after == "30" else 45.0
    value = (
        retry_after
        if retry_after == "30"
        else format_datetime(clock.now() + timedelta(seconds=45), usegmt=True)
    )
    api = PostmarkAPI(
        _first(
            1,
            lambda: httpx.Response(
                429,
                headers={"Retry-After": value},
                json={"ErrorCode": 429, "Message": "Rate limit"},
            ),
        )
    )
    site = make_site(POSTMARK_CONFIG)
    report = site.send(sender=api.sender())
    assert report.run.retried == 8 and report.run.passes == 2
    assert site.timer.slept >= seconds, site.timer.slept
    assert api.accepted == Counter(ADDRESSES)
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS, 0, 0, 0)


@pytest.mark.parametrize(
    "fault", ["500", "502", "503", "malformed json", "wrong count", "read timeout", "connect error"]
)
def test_transient_http_faults_are_retried_until_delivered(
    make_site: Callable[..., Site], fault: str
) -> None:
    def answer() -> httpx.Response:
        if fault.isdigit():
            return httpx.Response(int(fault), text="<html>Bad Gateway</html>")
        if fault == "malformed json":
            return httpx.Response(200, text='[{"ErrorCode": 0, "To": ')
        if fault == "wrong count":
            return httpx.Response(200, json=[])
        if fault == "read timeout":
            raise httpx.ReadTimeout("timed out")
        raise httpx.ConnectError("connection refused")

    api = PostmarkAPI(_first(3, answer))
    site = make_site(POSTMARK_CONFIG)
    report = site.send(sender=api.sender())
    assert report.run.retried == 3 * 8 and report.run.passes >= 2
    assert site.timer.slept >= 1.0
    assert api.accepted == Counter(ADDRESSES)
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS, 0, 0, 0)


def test_partial_batch_failures_are_handled_per_message(make_site: Callable[..., Site]) -> None:
    inactive = set(ADDRESSES[1:3])  # 406: hard bounced or complained at Postmark
    invalid = {ADDRESSES[11]}  # 300 naming the address
    throttled = set(ADDRESSES[20:23])  # 429 per message, once
    refused = {ADDRESSES[30]}  # some other per-message code: failed, address kept
    seen: Counter[str] = Counter()

    def respond(number: int, batch: list[dict[str, Any]]) -> httpx.Response:
        items = []
        for m in batch:
            to = m["To"]
            seen[to] += 1
            if to in inactive:
                item = {
                    "ErrorCode": 406,
                    "Message": f"You tried to send to recipient(s) that "
                    f"have been marked as inactive: {to}",
                }
            elif to in invalid:
                item = {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{to}'."}
            elif to in throttled and seen[to] == 1:
                item = {"ErrorCode": 429, "Message": "Rate limit exceeded"}
            elif to in refused:
                item = {"ErrorCode": 701, "Message": "Message rejected"}
            else:
                item = PostmarkAPI.ok(m)
            items.append({"To": to, **item})
        return httpx.Response(200, json=items)

    api = PostmarkAPI(respond)
    site = make_site(POSTMARK_CONFIG)
    report = site.send(sender=api.sender())
    assert report.run.retried == len(throttled) and report.run.passes == 2
    failed = inactive | invalid | refused
    assert api.accepted == Counter(a for a in ADDRESSES if a not in failed)
    failures = site.failures()
    assert set(failures) == failed
    for address in inactive | invalid:
        assert subscriber_status(site.db, address) is SubscriberStatus.BOUNCED
    assert "error 406" in failures[ADDRESSES[1]] and "error 300" in failures[ADDRESSES[11]]
    assert subscriber_status(site.db, ADDRESSES[30]) is SubscriberStatus.ACTIVE
    assert "error 701" in failures[ADDRESSES[30]]
    assert status(site.config.root) == Status(RECIPIENTS, RECIPIENTS - 4, 4, 0, 0)


def test_a_fault_that_never_clears_gives_up_after_max_attempts(
    make_site: Callable[..., Site],
) -> None:
    api = PostmarkAPI(lambda number, batch: httpx.Response(503, text="down for maintenance"))
    site = make_site(POSTMARK_CONFIG + "max_attempts = 3\nmax_consecutive_errors = 1000\n")
    report = site.send(sender=api.sender())
    assert report.run.passes == 3 and report.run.failed == RECIPIENTS
    assert api.accepted == Counter()
    assert all(
        e.startswith("gave up after 3 attempts: postmark: HTTP 503")
        for e in site.failures().values()
    )
    assert status(site.config.root) == Status(RECIPIENTS, 0, RECIPIENTS, 0, 0)
