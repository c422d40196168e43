"""The send path: ledger, exactly-once resume, retries, suppression, stop conditions."""

from __future__ import annotations

import email
import email.policy
import threading
from collections import Counter

import pytest

from newsletter.deliver.ratelimit import VirtualTimer
from newsletter.deliver.send import plan_send, send_edition
from newsletter.errors import PermanentSendError, SendError
from newsletter.models import DeliveryStatus, SubscriberStatus
from newsletter.senders.base import Message, Result, permanent, transient
from newsletter.senders.memory import MemorySender
from newsletter.state import subscribers
from newsletter.state.ledger import Ledger
from tests.deliver.conftest import SECRET_ENV, Project


def _send(p: Project, sender: MemorySender, **kw: object):
    plan = plan_send(p.config, 1, db=p.db)
    return send_edition(
        p.config, plan, db=p.db, sender=sender, environ=SECRET_ENV, timer=VirtualTimer(), **kw
    )  # type: ignore[arg-type]


def test_every_active_subscriber_gets_one_message(project: Project):
    subscribers.set_status(project.db, "reader05@example.org", SubscriberStatus.UNSUBSCRIBED)
    sender = MemorySender()
    report = _send(project, sender)
    assert report.enqueued == 19 and report.run.sent == 19
    assert sorted(sender.recipients) == sorted(
        f"reader{i:02d}@example.org" for i in range(20) if i != 5
    )
    s = report.summary
    assert s is not None and (s.total, s.sent, s.failed, s.pending) == (19, 19, 0, 0)
    # The same command again sends nothing: the ledger makes send idempotent.
    again = _send(project, MemorySender())
    assert again.enqueued == 0 and again.run.sent == 0


def test_message_is_personalised_and_well_formed(project: Project):
    sender = MemorySender()
    _send(project, sender)
    msg = next(m for m in sender.sent if m.recipient == "reader03@example.org")
    raw = msg.as_bytes()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only: strict servers reject bare LF
    parsed = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert parsed["To"] == "Reader 3 <reader03@example.org>"
    assert parsed["Subject"] == "Test Digest #1"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = parsed["List-Unsubscribe"]
    assert unsub.startswith("<https://digest.example.org/unsubscribe/")
    assert "mailto:unsubscribe@example.org?subject=unsubscribe%20" in unsub
    token = unsub.split("/unsubscribe/")[1].split(">")[0]
    text, html = (p.get_content() for p in parsed.iter_parts())
    assert f"https://digest.example.org/unsubscribe/{token}" in html
    assert f"https://digest.example.org/unsubscribe/{token}" in text
    assert "First paper 第一篇" in html and "*|UNSUB|*" not in html
    other = next(m for m in sender.sent if m.recipient == "reader04@example.org")
    assert other.message_id != msg.message_id
    assert msg.message_id == _send_ids(project)["reader03@example.org"]  # deterministic


def _send_ids(p: Project) -> dict[str, str]:
    plan = plan_send(p.config, 1, db=p.db)
    sender = MemorySender()
    send_edition(
        p.config, plan, db=p.db, sender=sender, environ=SECRET_ENV, to=["reader03@example.org"]
    )  # type: ignore[arg-type]
    return {m.recipient: m.message_id.replace("<test", "<e") for m in sender.sent}


def test_test_send_is_marked_and_not_recorded(project: Project):
    sender = MemorySender()
    plan = plan_send(project.config, 1, db=project.db)
    report = send_edition(
        project.config,
        plan,
        db=project.db,
        sender=sender,
        environ=SECRET_ENV,
        to=["me@example.org"],
    )
    assert report.test_results == ["me@example.org: sent"]
    assert sender.sent[0].subject == "[TEST] Test Digest #1"
    assert Ledger(project.db).summary(1).total == 0


def test_transient_failures_are_retried_until_delivered(project: Project):
    failures: Counter[str] = Counter()

    def flaky(msg: Message) -> Result | None:
        if (
            msg.recipient in ("reader01@example.org", "reader02@example.org")
            and failures[msg.recipient] < 2
        ):
            failures[msg.recipient] += 1
            return transient(msg, "451 4.3.0 try again later", retry_after=3)
        return None

    sender = MemorySender(fail=flaky)
    report = _send(project, sender)
    assert report.run.sent == 20 and report.run.retried == 4 and report.run.passes == 3
    assert Counter(sender.recipients) == Counter(
        {f"reader{i:02d}@example.org": 1 for i in range(20)}
    )
    assert report.summary is not None and report.summary.sent == 20


def test_transient_failures_give_up_after_max_attempts(project: Project):
    sender = MemorySender(
        fail=lambda m: transient(m, "421 busy") if m.recipient == "reader07@example.org" else None
    )
    report = _send(project, sender)
    s = report.summary
    assert s is not None and (s.sent, s.failed, s.pending) == (19, 1, 0)
    assert s.failures == [("reader07@example.org", "gave up after 5 attempts: 421 busy")]


def test_hard_bounce_is_recorded_and_suppressed(project: Project):
    sender = MemorySender(
        fail=lambda m: (
            permanent(m, "550 5.1.1 user unknown", hard_bounce=True)
            if m.recipient == "reader09@example.org"
            else None
        )
    )
    report = _send(project, sender)
    assert report.summary is not None and report.summary.failed == 1
    assert subscribers.get(project.db, "reader09@example.org").status == SubscriberStatus.BOUNCED
    # A later import can never re-activate it.
    assert subscribers.suppression(project.db, "READER09@example.org")


def test_retry_failed_sends_only_the_failed(project: Project):
    sender = MemorySender(
        fail=lambda m: (
            permanent(m, "554 rejected") if m.recipient == "reader11@example.org" else None
        )
    )
    _send(project, sender)
    second = MemorySender()
    report = _send(project, second, retry_failed=True)
    assert second.recipients == ["reader11@example.org"]
    assert report.summary is not None and report.summary.sent == 20


def test_run_stops_after_consecutive_errors(project: Project):
    text = (
        project.config.path.read_text() + "\n[sender]\nmax_consecutive_errors = 3\n"
        "concurrency = 1\n"
    )
    project.config.path.write_text(text)
    from newsletter.config import load_config

    project.config = load_config(project.config.root, environ={})
    sender = MemorySender(fail=lambda m: permanent(m, "554 blocked"))
    report = _send(project, sender)
    assert "3 consecutive errors" in report.run.stopped
    assert report.summary is not None and report.summary.failed == 3
    assert report.summary.pending == 17  # not burnt: they stay pending for the next run


def test_sender_wide_failure_stops_immediately(project: Project):
    def broken(msg: Message) -> Result | None:
        raise PermanentSendError("401 bad API token")

    report = _send(project, MemorySender(fail=broken))
    assert report.run.stopped.startswith("sender failed: 401 bad API token")
    assert report.summary is not None and report.summary.pending == 20


def test_stop_event_leaves_the_ledger_consistent_and_resumable(project: Project):
    stop = threading.Event()
    seen: list[str] = []

    def stop_after_five(msg: Message) -> Result | None:
        seen.append(msg.recipient)
        if len(seen) == 5:
            stop.set()
        return None

    text = project.config.path.read_text() + "\n[sender]\nconcurrency = 1\n"
    project.config.path.write_text(text)
    from newsletter.config import load_config

    project.config = load_config(project.config.root, environ={})
    first = MemorySender(fail=stop_after_five)
    report = _send(project, first, stop=stop)
    assert report.run.stopped.startswith("stopped by signal")
    s = Ledger(project.db).summary(1)
    assert s.sent == len(first.sent) and s.pending == 20 - len(first.sent)
    second = MemorySender()
    _send(project, second)
    assert sorted(first.recipients + second.recipients) == sorted(
        f"reader{i:02d}@example.org" for i in range(20)
    )


def test_draft_or_failing_checks_refuse_to_send(project: Project):
    (project.config.root / "issues" / "c.md").write_text(
        '---\ntitle: "Bad"\ndate: 2024-04-10\n---\n[rel](http://localhost/x)\n', "utf-8"
    )
    plan = plan_send(project.config, 1, db=project.db)
    with pytest.raises(SendError, match="pre-send check"):
        send_edition(project.config, plan, db=project.db, sender=MemorySender(), environ=SECRET_ENV)
    assert Ledger(project.db).summary(1).total == 0


def test_missing_secret_is_a_clear_error(project: Project):
    plan = plan_send(project.config, 1, db=project.db)
    with pytest.raises(Exception, match="NEWSLETTER_SECRET is not set"):
        send_edition(project.config, plan, db=project.db, sender=MemorySender(), environ={})


def test_header_injection_through_a_title_is_refused(project: Project):
    (project.config.root / "editions").mkdir()
    (project.config.root / "editions" / "2024-W15.md").write_text(
        '---\nsubject: "Hi\\r\\nBcc: victim@example.org"\n---\n', "utf-8"
    )
    with pytest.raises(Exception) as err:
        plan = plan_send(project.config, 1, db=project.db)
        send_edition(project.config, plan, db=project.db, sender=MemorySender(), environ=SECRET_ENV)
    assert "line break" in str(err.value) or "newline" in str(err.value).lower()
    assert Ledger(project.db).summary(1).sent == 0


def test_statuses_add_up(project: Project):
    sender = MemorySender(
        fail=lambda m: (
            permanent(m, "550 no")
            if m.recipient.endswith(("3@example.org", "6@example.org"))
            else None
        )
    )
    _send(project, sender)
    s = Ledger(project.db).summary(1)
    assert s.total == s.sent + s.failed + s.pending + s.suppressed == 20
    assert {DeliveryStatus.SENT, DeliveryStatus.FAILED}


def test_hourly_cap_counts_earlier_sends_and_leaves_the_rest_pending(project: Project):
    text = project.config.path.read_text() + "\n[sender]\nhourly_cap = 12\nconcurrency = 1\n"
    project.config.path.write_text(text)
    from newsletter.config import load_config

    project.config = load_config(project.config.root, environ={})
    subscribers.add(project.db, "early@example.org")
    plan = plan_send(project.config, 1, db=project.db)
    send_edition(
        project.config,
        plan,
        db=project.db,
        sender=MemorySender(),
        environ=SECRET_ENV,
        to=["me@example.org"],
    )  # test sends are not recorded, so they do not count
    first = MemorySender()
    report = _send(project, first)
    assert len(first.sent) == 12
    assert "[sender] hourly_cap of 12 reached" in report.run.stopped
    assert report.summary is not None and report.summary.pending == 21 - 12
    again = MemorySender()
    report = _send(project, again)  # still inside the same hour: nothing more goes out
    assert again.sent == [] and "hourly_cap" in report.run.stopped


def test_wire_safe_promise_holds_for_awkward_names_and_subjects(project: Project):
    """EditionMessage.wire_safe lets SMTP skip dot-stuffing: it must really hold."""
    from datetime import UTC, datetime

    from newsletter.deliver.message import PreparedEdition
    from newsletter.tokens import Signer

    plan = plan_send(project.config, 1, db=project.db)
    prepared = PreparedEdition(
        project.config, plan.rendered, Signer(b"k" * 32), sent_at=datetime(2024, 6, 1, tzinfo=UTC)
    )
    names = ["", ".dot", ". leading", "名字" * 40, "A " * 60 + ".", "x.y", '"quoted."']
    for i, name in enumerate(names):
        msg = prepared.message(f"r{i}@example.org", name, i)
        assert msg.wire_safe
        raw = msg.as_bytes()
        assert raw.endswith(b"\r\n") and not raw.startswith(b".")
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert b"\r\n." not in raw, name
