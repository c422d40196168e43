"""POST /subscribe → double opt-in: who gets a confirmation mail, what every page says."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

import pytest

from newsletter.clock import FixedClock
from newsletter.models import SubscriberStatus
from newsletter.serve.security import SlidingWindow
from newsletter.serve.settings import Limit, ServeSettings, parse_proxies
from newsletter.state import subscribers
from tests.serve.conftest import MakeService, Service

NEUTRAL = "a confirmation link is on its way"


def status(service: Service, email: str) -> SubscriberStatus | None:
    sub = subscribers.get(service.db, email)
    return None if sub is None else sub.status


def test_new_address_gets_one_confirmation_mail_and_the_link_activates(service: Service):
    page = service.subscribe("ada@example.org", "Ada Lovelace")
    assert page.status_code == 200 and NEUTRAL in page.text
    assert status(service, "ada@example.org") is SubscriberStatus.PENDING
    [mail] = service.sender.sent
    assert mail.recipient == "ada@example.org" and mail.name == "Ada Lovelace"
    assert mail.subject == "Confirm your subscription to Test Digest"
    assert mail.from_header == "Test Digest <digest@example.org>"
    parsed = message_from_bytes(mail.as_bytes(), policy=default)
    assert "List-Unsubscribe" not in parsed  # a transactional mail, not a list mail
    assert parsed["Auto-Submitted"] == "auto-generated"
    [link] = service.confirm_links()
    assert link in mail.html
    confirmed = service.client.get(link)
    assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert status(service, "ada@example.org") is SubscriberStatus.ACTIVE
    assert subscribers.get(service.db, "ada@example.org").name == "Ada Lovelace"  # type: ignore[union-attr]
    again = service.client.get(link)  # a second click changes nothing and says so
    assert again.status_code == 200 and "is already subscribed" in again.text


def test_an_active_address_gets_the_same_page_and_no_mail(service: Service):
    subscribers.add(service.db, "bob@example.org")
    fresh = service.subscribe("new@example.org").text
    service.sender.clear()
    known = service.subscribe("bob@example.org").text
    assert service.sender.sent == []
    assert known.replace("bob@", "X@") == fresh.replace("new@", "X@")  # nothing revealed


@pytest.mark.parametrize("kind", [SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED])
def test_bounced_or_complained_addresses_are_never_mailed(service: Service, kind):
    subscribers.add(service.db, "gone@example.org")
    subscribers.set_status(service.db, "gone@example.org", kind)
    page = service.subscribe("gone@example.org")
    assert page.status_code == 200 and NEUTRAL in page.text
    assert service.sender.sent == [] and status(service, "gone@example.org") is kind


def test_a_suppressed_bounce_without_a_subscriber_row_is_not_mailed(service: Service):
    subscribers.set_status(service.db, "late@example.org", SubscriberStatus.BOUNCED)
    assert NEUTRAL in service.subscribe("late@example.org").text
    assert service.sender.sent == [] and status(service, "late@example.org") is None


def test_resubscribing_after_unsubscribe_needs_the_link_again(service: Service, clock: FixedClock):
    subscribers.add(service.db, "cy@example.org")
    subscribers.set_status(service.db, "cy@example.org", SubscriberStatus.UNSUBSCRIBED)
    clock.advance(minutes=5)
    assert NEUTRAL in service.subscribe("cy@example.org").text
    assert status(service, "cy@example.org") is SubscriberStatus.UNSUBSCRIBED  # not yet
    assert subscribers.suppression(service.db, "cy@example.org") is not None
    [link] = service.confirm_links()
    assert service.client.get(link).status_code == 200
    assert status(service, "cy@example.org") is SubscriberStatus.ACTIVE
    assert subscribers.suppression(service.db, "cy@example.org") is None


def test_a_pending_address_may_ask_for_a_new_link(service: Service):
    service.subscribe("dee@example.org")
    service.subscribe("dee@example.org")
    assert len(service.confirm_links()) == 2
    assert status(service, "dee@example.org") is SubscriberStatus.PENDING


def test_invalid_address_is_explained_and_input_is_escaped(service: Service):
    evil = '"><script>alert(1)</script>'
    page = service.subscribe(evil, name="<b>x</b>")
    assert page.status_code == 400
    assert "does not look like an email address" in page.text
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text
    assert service.sender.sent == []


def test_the_address_echoed_back_is_escaped(service: Service):
    page = service.subscribe('"<i>"@example.org')
    assert "<i>" not in page.text


def test_a_name_with_a_line_break_is_refused_without_mail(service: Service):
    page = service.subscribe("eve@example.org", name="Eve\r\nBcc: x@example.org")
    assert page.status_code == 400 and service.sender.sent == []
    assert status(service, "eve@example.org") is None


def test_the_honeypot_field_pretends_success(service: Service):
    page = service.subscribe("bot@example.org", website="http://spam.example")
    assert page.status_code == 200 and NEUTRAL in page.text
    assert service.sender.sent == [] and status(service, "bot@example.org") is None


def test_oversized_form_is_refused(service: Service):
    page = service.client.post(
        "/subscribe",
        content=b"email=" + b"a" * 20000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert page.status_code == 413


def test_per_ip_limit_answers_429_with_retry_after(make_service: MakeService):
    service = make_service(ServeSettings(ip_limit=Limit(2, 3600)))
    assert service.subscribe("a@example.org").status_code == 200
    assert service.subscribe("b@example.org").status_code == 200
    refused = service.subscribe("c@example.org")
    assert refused.status_code == 429 and 3500 <= int(refused.headers["Retry-After"]) <= 3601
    assert status(service, "c@example.org") is None and len(service.sender.sent) == 2


def test_per_address_limit_stops_mail_bombing_silently(make_service: MakeService):
    service = make_service(ServeSettings(address_limit=Limit(3, 86400)))
    for _ in range(5):
        page = service.subscribe("Victim@Example.org")
        assert page.status_code == 200 and NEUTRAL in page.text
    # Case variants are the same mailbox: still three mails in all.
    service.subscribe("victim@example.org")
    assert len(service.sender.sent) == 3


def test_forwarded_for_counts_only_from_trusted_proxies(make_service: MakeService):
    limit = Limit(1, 3600)
    trusted = make_service(
        ServeSettings(ip_limit=limit, trusted_proxies=parse_proxies(["10.0.0.0/8"])),
        client=("10.1.2.3", 4000),
    )
    for n, ip in enumerate(["203.0.113.1", "203.0.113.2"]):
        trusted.client.headers["X-Forwarded-For"] = f"198.51.100.9, {ip}"
        assert trusted.subscribe(f"p{n}@example.org").status_code == 200
    trusted.client.headers["X-Forwarded-For"] = "203.0.113.1"
    assert trusted.subscribe("p3@example.org").status_code == 429  # same client again
    untrusted = make_service(ServeSettings(ip_limit=limit), client=("192.0.2.7", 4000))
    untrusted.client.headers["X-Forwarded-For"] = "203.0.113.50"
    assert untrusted.subscribe("q1@example.org").status_code == 200
    untrusted.client.headers["X-Forwarded-For"] = "203.0.113.51"  # a spoofed header: ignored
    assert untrusted.subscribe("q2@example.org").status_code == 429


def test_sliding_window_forgets_old_hits():
    now = [1000.0]
    window = SlidingWindow(Limit(2, 60), now=lambda: now[0])
    assert window.hit("k") == 0 and window.hit("k") == 0
    assert window.hit("k") == pytest.approx(60)
    now[0] += 30
    assert window.hit("k") == pytest.approx(30)
    assert window.hit("other") == 0
    now[0] += 31
    assert window.hit("k") == 0


def test_pages_carry_security_headers(service: Service):
    page = service.client.get("/subscribe")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert 'action="/subscribe"' in page.text and 'lang="en"' in page.text


def test_pages_and_mail_follow_the_newsletter_language(make_project, make_service):
    from tests.conftest import BASE_CONFIG

    project = make_project(config=BASE_CONFIG.replace('language = "en"', 'language = "zh-CN"'))
    service = make_service(project=project)
    page = service.subscribe("li@example.org")
    assert "确认链接已经发出" in page.text
    [mail] = service.sender.sent
    assert mail.subject == "请确认订阅「Test Digest」" and "确认订阅" in mail.text
