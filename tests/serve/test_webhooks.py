"""Postmark, SendGrid, Mailgun and Resend webhooks with their documented payloads and schemes.

Payloads are the providers' documented examples (addresses changed to ours); signatures are
made here with keys generated for the test, exactly as each provider describes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.clock import FixedClock
from newsletter.errors import ConfigError
from newsletter.models import SubscriberStatus
from newsletter.state import subscribers
from tests.serve.conftest import MakeService, Service

ADDRESS = "john@example.com"


def status(service: Service, email: str = ADDRESS) -> SubscriberStatus:
    sub = subscribers.get(service.db, email)
    assert sub is not None
    return sub.status


def add(service: Service, email: str = ADDRESS) -> None:
    subscribers.add(service.db, email)


def test_unconfigured_webhooks_answer_404(service: Service):
    for name in ("postmark", "sendgrid", "mailgun", "resend", "ses", "other"):
        assert service.client.post(f"/webhooks/{name}", content=b"{}").status_code == 404


# Postmark: basic auth ------------------------------------------------------------------------
PM_ENV = {
    "NEWSLETTER_POSTMARK_WEBHOOK_USER": "hook",
    "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD": "pm-hook-pass-1234",
}
PM_BOUNCE = {
    "RecordType": "Bounce",
    "MessageStream": "outbound",
    "ID": 4323372036854775807,
    "Type": "HardBounce",
    "TypeCode": 1,
    "Name": "Hard bounce",
    "Tag": "Test",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Metadata": {"a_key": "a_value"},
    "ServerID": 23,
    "Description": "The server was unable to deliver your message (ex: unknown user, "
    "mailbox not found).",
    "Details": "Test bounce details",
    "Email": ADDRESS,
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": True,
    "Subject": "Test subject",
    "Content": "<Full dump of bounce>",
}
PM_COMPLAINT = {
    "RecordType": "SpamComplaint",
    "MessageStream": "outbound",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Tag": "Test",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "ServerID": 1234,
    "Description": "",
    "Details": "Test spam complaint details",
    "Email": ADDRESS,
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": False,
    "Subject": "Test subject",
    "Content": "<Abuse report dump>",
}
PM_CHANGE = {
    "RecordType": "SubscriptionChange",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "ServerID": 123456,
    "MessageStream": "broadcast",
    "ChangedAt": "2020-02-01T10:53:34.416071Z",
    "Recipient": ADDRESS,
    "Origin": "Recipient",
    "SuppressSending": True,
    "SuppressionReason": "HardBounce",
    "Tag": "my-tag",
    "Metadata": {"example": "value", "example_2": "value"},
}


def postmark(
    service: Service,
    payload: dict[str, Any],
    auth: tuple[str, str] | None = ("hook", "pm-hook-pass-1234"),
) -> Any:
    return service.client.post("/webhooks/postmark", json=payload, auth=auth)


@pytest.mark.parametrize(
    "payload, expected",
    [
        (PM_BOUNCE, SubscriberStatus.BOUNCED),
        (PM_COMPLAINT, SubscriberStatus.COMPLAINED),
        (PM_CHANGE, SubscriberStatus.BOUNCED),
        ({**PM_CHANGE, "SuppressionReason": "SpamComplaint"}, SubscriberStatus.COMPLAINED),
        ({**PM_CHANGE, "SuppressionReason": "ManualSuppression"}, SubscriberStatus.UNSUBSCRIBED),
    ],
)
def test_postmark_events_suppress(make_service: MakeService, payload, expected):
    service = make_service(environ=PM_ENV)
    add(service)
    answer = postmark(service, payload)
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    assert status(service) is expected
    assert subscribers.suppression(service.db, ADDRESS) is not None


@pytest.mark.parametrize(
    "payload",
    [
        {**PM_BOUNCE, "Type": "SoftBounce", "TypeCode": 4096, "Inactive": False},
        {**PM_BOUNCE, "Type": "Transient", "TypeCode": 2, "Inactive": False},
        {**PM_CHANGE, "SuppressSending": False, "SuppressionReason": None},  # a reactivation
        {"RecordType": "Delivery", "Recipient": ADDRESS},
    ],
)
def test_postmark_soft_bounces_and_reactivations_change_nothing(make_service: MakeService, payload):
    service = make_service(environ=PM_ENV)
    add(service)
    answer = postmark(service, payload)
    assert answer.status_code == 200 and answer.json() == {"ok": True, "applied": 0, "ignored": 1}
    assert status(service) is SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    "auth",
    [None, ("hook", "wrong"), ("other", "pm-hook-pass-1234"), ("hook", "pm-hook-pass-12345")],
)
def test_postmark_refuses_bad_credentials(make_service: MakeService, auth):
    service = make_service(environ=PM_ENV)
    add(service)
    answer = postmark(service, PM_BOUNCE, auth=auth)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    assert "pm-hook-pass" not in answer.text
    assert status(service) is SubscriberStatus.ACTIVE


def test_a_late_bounce_for_an_unknown_address_is_suppressed(make_service: MakeService):
    service = make_service(environ=PM_ENV)
    assert postmark(service, PM_BOUNCE).json()["applied"] == 1
    assert subscribers.suppression(service.db, ADDRESS) == "bounced: postmark HardBounce"


# SendGrid: ECDSA P-256 signed event webhook --------------------------------------------------
SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(
    SG_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()
SG_ENV = {"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": SG_PUBLIC}
SG_EVENTS = [
    {
        "email": ADDRESS,
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "bounce",
        "category": "cat facts",
        "sg_event_id": "sg_event_id",
        "sg_message_id": "sg_message_id",
        "reason": "500 unknown recipient",
        "status": "5.0.0",
        "type": "bounce",
    },
    {
        "email": "spam@example.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "spamreport",
        "category": "cat facts",
        "sg_event_id": "sg_event_id",
        "sg_message_id": "sg_message_id",
    },
    {
        "email": "blocked@example.com",
        "timestamp": 1513299569,
        "event": "bounce",
        "reason": "unable to get mx info",
        "sg_event_id": "x",
        "type": "blocked",
    },
    {
        "email": "open@example.com",
        "timestamp": 1513299569,
        "event": "open",
        "sg_event_id": "sg_event_id",
        "useragent": "Mozilla/4.0",
        "ip": "255.255.255.255",
    },
    {
        "email": "dropped@example.com",
        "timestamp": 1513299569,
        "event": "dropped",
        "reason": "Bounced Address",
        "status": "5.0.0",
        "sg_event_id": "y",
    },
]


def sendgrid(
    service: Service,
    events: list[dict[str, Any]],
    *,
    key: Any = SG_KEY,
    timestamp: str = "1588788367",
    tamper: bool = False,
) -> Any:
    body = json.dumps(events).encode()
    signature = base64.b64encode(
        key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    ).decode()
    if tamper:
        body = body.replace(b"bounce", b"bounc3", 1)
    return service.client.post(
        "/webhooks/sendgrid",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": signature,
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        },
    )


def test_sendgrid_batch_with_a_good_signature(make_service: MakeService):
    service = make_service(environ=SG_ENV)
    for email in (ADDRESS, "spam@example.com", "blocked@example.com", "open@example.com"):
        add(service, email)
    answer = sendgrid(service, SG_EVENTS)
    assert answer.status_code == 200 and answer.json() == {"ok": True, "applied": 3, "ignored": 2}
    assert status(service) is SubscriberStatus.BOUNCED
    assert status(service, "spam@example.com") is SubscriberStatus.COMPLAINED
    assert status(service, "blocked@example.com") is SubscriberStatus.ACTIVE  # soft
    assert status(service, "open@example.com") is SubscriberStatus.ACTIVE
    assert subscribers.suppression(service.db, "dropped@example.com") is not None


def test_sendgrid_accepts_a_pem_key_too(make_service: MakeService):
    pem = SG_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    service = make_service(environ={"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": pem.decode()})
    add(service)
    assert sendgrid(service, SG_EVENTS[:1]).status_code == 200
    assert status(service) is SubscriberStatus.BOUNCED


@pytest.mark.parametrize("how", ["other key", "tampered body", "other timestamp", "missing"])
def test_sendgrid_refuses_bad_signatures(make_service: MakeService, how: str):
    service = make_service(environ=SG_ENV)
    add(service)
    if how == "other key":
        answer = sendgrid(service, SG_EVENTS, key=ec.generate_private_key(ec.SECP256R1()))
    elif how == "tampered body":
        answer = sendgrid(service, SG_EVENTS, tamper=True)
    elif how == "other timestamp":
        body = json.dumps(SG_EVENTS).encode()
        signature = base64.b64encode(
            SG_KEY.sign(b"1588788367" + body, ec.ECDSA(hashes.SHA256()))
        ).decode()
        answer = service.client.post(
            "/webhooks/sendgrid",
            content=body,
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": signature,
                "X-Twilio-Email-Event-Webhook-Timestamp": "1588788368",
            },
        )
    else:
        answer = service.client.post("/webhooks/sendgrid", json=SG_EVENTS)
    assert answer.status_code == 403
    assert status(service) is SubscriberStatus.ACTIVE


def test_a_malformed_sendgrid_key_is_a_config_error(make_service: MakeService):
    with pytest.raises(ConfigError, match="NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"):
        make_service(environ={"NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY": "bm90IGEga2V5"})


# Mailgun: HMAC-SHA256 of timestamp + token ---------------------------------------------------
MG_KEY = "mg-signing-key-5f1c0a"
MG_ENV = {"NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY": MG_KEY}
MG_FAILED = {
    "event": "failed",
    "id": "G9Bn5sl1TC6nu79C8C0bwg",
    "timestamp": 1521233195.375624,
    "log-level": "error",
    "severity": "permanent",
    "reason": "bounce",
    "envelope": {"sender": "bob@sample.mailgun.org", "transport": "smtp", "targets": ADDRESS},
    "recipient": ADDRESS,
    "recipient-domain": "example.com",
    "delivery-status": {
        "code": 550,
        "message": "5.1.1 The email account that you tried to reach does not exist.",
        "description": "",
        "attempt-no": 1,
    },
    "message": {
        "headers": {
            "to": ADDRESS,
            "message-id": "20130503192659.13651.20287@x",
            "from": "Bob <bob@sample.mailgun.org>",
            "subject": "Test",
        }
    },
    "flags": {"is-routed": False, "is-authenticated": True, "is-test-mode": False},
}


def mailgun_body(
    event_data: dict[str, Any],
    token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
    key: str = MG_KEY,
) -> dict[str, Any]:
    timestamp = "1529006854"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def test_mailgun_permanent_failure_and_complaint(make_service: MakeService):
    service = make_service(environ=MG_ENV)
    add(service)
    add(service, "alice@example.com")
    answer = service.client.post("/webhooks/mailgun", json=mailgun_body(MG_FAILED))
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    assert status(service) is SubscriberStatus.BOUNCED
    complaint = {
        "event": "complained",
        "id": "-Agny091SquKnsrW2NEKUA",
        "timestamp": 1521233123.501324,
        "log-level": "warn",
        "recipient": "alice@example.com",
    }
    answer = service.client.post("/webhooks/mailgun", json=mailgun_body(complaint, token="t2"))
    assert answer.status_code == 200
    assert status(service, "alice@example.com") is SubscriberStatus.COMPLAINED


def test_mailgun_temporary_failure_is_ignored(make_service: MakeService):
    service = make_service(environ=MG_ENV)
    add(service)
    temporary = {**MG_FAILED, "severity": "temporary", "reason": "generic"}
    answer = service.client.post("/webhooks/mailgun", json=mailgun_body(temporary))
    assert answer.json()["ignored"] == 1 and status(service) is SubscriberStatus.ACTIVE


def test_mailgun_refuses_a_bad_signature(make_service: MakeService):
    service = make_service(environ=MG_ENV)
    add(service)
    zeros = {"timestamp": "1529006854", "token": "t" * 50, "signature": "0" * 64}
    for body in (
        mailgun_body(MG_FAILED, key="not-the-key"),
        {"signature": zeros, "event-data": MG_FAILED},
        {"event-data": MG_FAILED},
    ):
        assert service.client.post("/webhooks/mailgun", json=body).status_code == 406
    assert status(service) is SubscriberStatus.ACTIVE


def test_mailgun_replayed_token_does_nothing(make_service: MakeService):
    service = make_service(environ=MG_ENV)
    add(service)
    captured = mailgun_body(MG_FAILED)
    assert service.client.post("/webhooks/mailgun", json=captured).json()["applied"] == 1
    subscribers.reactivate(service.db, ADDRESS)  # the reader confirmed again since
    replay = service.client.post("/webhooks/mailgun", json=captured)
    assert replay.status_code == 200 and replay.json() == {"ok": True, "duplicate": True}
    assert status(service) is SubscriberStatus.ACTIVE


# Resend: Svix signatures ---------------------------------------------------------------------
RS_KEY = b"resend-test-key-bytes-0123456789"
RS_SECRET = "whsec_" + base64.b64encode(RS_KEY).decode()
RS_ENV = {"NEWSLETTER_RESEND_WEBHOOK_SECRET": RS_SECRET}
RS_BOUNCED = {
    "type": "email.bounced",
    "created_at": "2024-11-22T23:41:12.126Z",
    "data": {
        "broadcast_id": "8b146471-e88e-4322-86af-016cd36fd216",
        "created_at": "2024-11-22T23:41:11.894719+00:00",
        "email_id": "56761188-7520-42d8-8898-ff6fc54ce618",
        "from": "Acme <onboarding@resend.dev>",
        "to": [ADDRESS],
        "subject": "Sending this example",
        "bounce": {
            "message": "The recipient's email address is on the suppression list "
            "because it has a recent history of producing hard bounces.",
            "subType": "Suppressed",
            "type": "Permanent",
        },
    },
}


def resend(
    service: Service,
    payload: dict[str, Any],
    now: datetime,
    *,
    msg_id: str = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    key: bytes = RS_KEY,
    skew: int = 0,
) -> Any:
    body = json.dumps(payload).encode()
    timestamp = str(int(now.timestamp()) + skew)
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    signature = "v1,bm90LXRoZS1zaWduYXR1cmU= v1," + base64.b64encode(mac).decode()
    return service.client.post(
        "/webhooks/resend",
        content=body,
        headers={"svix-id": msg_id, "svix-timestamp": timestamp, "svix-signature": signature},
    )


def test_resend_bounce_and_complaint(make_service: MakeService, clock: FixedClock):
    service = make_service(environ=RS_ENV)
    add(service)
    add(service, "spam@example.com")
    answer = resend(service, RS_BOUNCED, clock.at)
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    assert status(service) is SubscriberStatus.BOUNCED
    complained = {
        "type": "email.complained",
        "created_at": "2024-11-22T23:41:12.126Z",
        "data": {**RS_BOUNCED["data"], "to": ["spam@example.com"]},
    }
    assert resend(service, complained, clock.at, msg_id="msg_2").status_code == 200
    assert status(service, "spam@example.com") is SubscriberStatus.COMPLAINED


def test_resend_refuses_bad_signatures_and_old_timestamps(
    make_service: MakeService, clock: FixedClock
):
    service = make_service(environ=RS_ENV)
    add(service)
    assert resend(service, RS_BOUNCED, clock.at, key=b"another-key").status_code == 403
    assert resend(service, RS_BOUNCED, clock.at, skew=-301).status_code == 403
    assert resend(service, RS_BOUNCED, clock.at, skew=301).status_code == 403
    assert service.client.post("/webhooks/resend", json=RS_BOUNCED).status_code == 403
    assert status(service) is SubscriberStatus.ACTIVE
    assert resend(service, RS_BOUNCED, clock.at, skew=-299).status_code == 200


def test_resend_replayed_message_id_does_nothing(make_service: MakeService, clock: FixedClock):
    service = make_service(environ=RS_ENV)
    add(service)
    assert resend(service, RS_BOUNCED, clock.at).json()["applied"] == 1
    subscribers.reactivate(service.db, ADDRESS)
    clock.advance(seconds=30)
    assert resend(service, RS_BOUNCED, clock.at).json() == {"ok": True, "duplicate": True}
    assert status(service) is SubscriberStatus.ACTIVE


def test_a_malformed_resend_secret_is_a_config_error(make_service: MakeService):
    with pytest.raises(ConfigError, match="NEWSLETTER_RESEND_WEBHOOK_SECRET"):
        make_service(environ={"NEWSLETTER_RESEND_WEBHOOK_SECRET": "whsec_***"})
