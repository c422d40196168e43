"""Confirm and unsubscribe links: forgery, tampering, wrong purpose or address, expiry, replay."""

from __future__ import annotations

import pytest

from newsletter.clock import FixedClock
from newsletter.models import SubscriberStatus
from newsletter.serve.subscription import CONFIRM_TTL_MINUTES, minutes
from newsletter.state import subscribers
from newsletter.tokens import Signer
from tests.serve.conftest import Service

ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


def status(service: Service, email: str) -> SubscriberStatus:
    sub = subscribers.get(service.db, email)
    assert sub is not None
    return sub.status


def tamper(token: str) -> str:
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def test_one_click_post_unsubscribes_and_suppresses(service: Service, signer: Signer):
    sub = subscribers.add(service.db, "ada@example.org")
    token = signer.make("unsubscribe", sub.id, 7, sub.email)
    answer = service.client.post(f"/unsubscribe/{token}", **ONE_CLICK)
    assert answer.status_code == 200 and "You are unsubscribed" in answer.text
    assert "ada@example.org will not receive Test Digest" in answer.text
    assert status(service, "ada@example.org") is SubscriberStatus.UNSUBSCRIBED
    assert subscribers.suppression(service.db, "ada@example.org") == "unsubscribed: one-click"
    again = service.client.post(f"/unsubscribe/{token}", **ONE_CLICK)  # replay: harmless
    assert again.status_code == 200
    assert status(service, "ada@example.org") is SubscriberStatus.UNSUBSCRIBED
    page = service.client.get(f"/unsubscribe/{token}")  # no button once it is done
    assert "You are unsubscribed" in page.text and "<form" not in page.text


def test_get_shows_a_button_and_changes_nothing(service: Service, signer: Signer):
    sub = subscribers.add(service.db, "bob&o'neil@example.org")
    token = signer.make("unsubscribe", sub.id, 1, sub.email)
    page = service.client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert f'<form method="post" action="/unsubscribe/{token}">' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "bob&o'neil" not in page.text and "bob&amp;o&#39;neil@example.org" in page.text
    assert status(service, sub.email) is SubscriberStatus.ACTIVE


def test_a_complained_subscriber_stays_complained(service: Service, signer: Signer):
    sub = subscribers.add(service.db, "cy@example.org")
    subscribers.set_status(service.db, sub.email, SubscriberStatus.COMPLAINED)
    token = signer.make("unsubscribe", sub.id, 1, sub.email)
    assert service.client.post(f"/unsubscribe/{token}", **ONE_CLICK).status_code == 200
    assert status(service, sub.email) is SubscriberStatus.COMPLAINED


@pytest.mark.parametrize("method", ["get", "post"])
def test_forged_tampered_and_misdirected_unsubscribe_tokens_are_refused(
    service: Service, signer: Signer, method: str
):
    ada = subscribers.add(service.db, "ada@example.org")
    bob = subscribers.add(service.db, "bob@example.org")
    good = signer.make("unsubscribe", ada.id, 3, ada.email)
    bad = [
        tamper(good),
        "A" * 40,  # random garbage of the right length
        "short",
        Signer(b"some-other-secret-entirely-123456").make("unsubscribe", ada.id, 3, ada.email),
        signer.make("unsubscribe", ada.id, 3, bob.email),  # ada's id, bob's address
        signer.make("unsubscribe", 9999, 3, ada.email),  # no such subscriber
        signer.make("confirm", ada.id, minutes(), ada.email),  # the other purpose
    ]
    for token in bad:
        answer = getattr(service.client, method)(f"/unsubscribe/{token}")
        assert answer.status_code in (400, 404), token
        if answer.status_code == 400:
            assert "This link does not work" in answer.text
    assert status(service, ada.email) is SubscriberStatus.ACTIVE
    assert status(service, bob.email) is SubscriberStatus.ACTIVE


def test_confirm_rejects_unsubscribe_tokens_and_forgeries(service: Service, signer: Signer):
    sub = subscribers.add(service.db, "dee@example.org", status=SubscriberStatus.PENDING)
    other = subscribers.add(service.db, "eve@example.org", status=SubscriberStatus.PENDING)
    good = signer.make("confirm", sub.id, minutes(), sub.email)
    for token in (
        tamper(good),
        signer.make("unsubscribe", sub.id, minutes(), sub.email),
        signer.make("confirm", sub.id, minutes(), other.email),
        Signer(b"some-other-secret-entirely-123456").make("confirm", sub.id, minutes(), sub.email),
    ):
        answer = service.client.get(f"/confirm/{token}")
        assert answer.status_code == 400 and "This link does not work" in answer.text
    assert status(service, sub.email) is SubscriberStatus.PENDING
    assert service.client.get(f"/confirm/{good}").status_code == 200
    assert status(service, sub.email) is SubscriberStatus.ACTIVE
    assert status(service, other.email) is SubscriberStatus.PENDING


def test_confirmation_links_expire_after_seven_days(service: Service, clock: FixedClock):
    service.subscribe("fay@example.org")
    [link] = service.confirm_links()
    clock.advance(minutes=CONFIRM_TTL_MINUTES + 1)
    answer = service.client.get(link)
    assert answer.status_code == 410 and "This link has expired" in answer.text
    assert status(service, "fay@example.org") is SubscriberStatus.PENDING


def test_a_link_from_the_future_is_refused(service: Service, signer: Signer):
    sub = subscribers.add(service.db, "gus@example.org", status=SubscriberStatus.PENDING)
    token = signer.make("confirm", sub.id, minutes() + 60, sub.email)
    assert service.client.get(f"/confirm/{token}").status_code == 400
    assert status(service, sub.email) is SubscriberStatus.PENDING


def test_an_old_confirmation_link_cannot_undo_a_later_unsubscribe(
    service: Service, signer: Signer, clock: FixedClock
):
    service.subscribe("hal@example.org")
    [link] = service.confirm_links()
    assert service.client.get(link).status_code == 200
    clock.advance(minutes=10)
    sub = subscribers.get(service.db, "hal@example.org")
    assert sub is not None
    unsubscribe = signer.make("unsubscribe", sub.id, 1, sub.email)
    assert service.client.post(f"/unsubscribe/{unsubscribe}", **ONE_CLICK).status_code == 200
    clock.advance(minutes=10)
    replay = service.client.get(link)  # the confirmation mail is still in the inbox
    assert replay.status_code == 410
    assert status(service, "hal@example.org") is SubscriberStatus.UNSUBSCRIBED
    # Asking again yields a fresh link that does work.
    service.subscribe("hal@example.org")
    assert service.client.get(service.confirm_links()[-1]).status_code == 200
    assert status(service, "hal@example.org") is SubscriberStatus.ACTIVE


def test_a_bounced_subscriber_cannot_be_confirmed_with_an_old_link(service: Service):
    service.subscribe("ida@example.org")
    [link] = service.confirm_links()
    subscribers.set_status(service.db, "ida@example.org", SubscriberStatus.BOUNCED)
    assert service.client.get(link).status_code == 400
    assert status(service, "ida@example.org") is SubscriberStatus.BOUNCED
