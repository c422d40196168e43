"""SES bounces and complaints via SNS: signature versions 1 and 2, certificate URL rules,
topic allow-list and SubscriptionConfirmation, with a self-signed certificate over MockTransport.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.models import SubscriberStatus
from newsletter.serve.webhooks.sns import canonical, is_sns_url
from newsletter.state import subscribers
from tests.serve.conftest import MakeService, Service

TOPIC = "arn:aws:sns:us-west-2:123456789012:ses-notifications"
ENV = {"NEWSLETTER_SES_TOPIC_ARNS": f"arn:aws:sns:eu-west-1:123456789012:other, {TOPIC}"}
CERT_URL = (
    "https://sns.us-west-2.amazonaws.com/"
    "SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
)
SUBSCRIBE_URL = (
    "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
    f"{TOPIC}&Token=2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a98"
)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
_NOW = dt.datetime.now(dt.UTC)
CERT = (
    x509.CertificateBuilder()
    .subject_name(_NAME)
    .issuer_name(_NAME)
    .public_key(KEY.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(_NOW - dt.timedelta(days=1))
    .not_valid_after(_NOW + dt.timedelta(days=1))
    .sign(KEY, hashes.SHA256())
).public_bytes(serialization.Encoding.PEM)

# Amazon SES notification examples (docs: "Amazon SES notification examples").
BOUNCE = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "reportingMTA": "dns; email.example.com",
        "bouncedRecipients": [
            {
                "emailAddress": "jane@example.com",
                "status": "5.1.1",
                "action": "failed",
                "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User",
            }
        ],
        "bounceSubType": "General",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000",
        "remoteMtaIp": "127.0.2.0",
    },
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "source": "john@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
    },
}
COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": "richard@example.com"}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2016-01-27T14:59:38.237Z",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
    },
    "mail": BOUNCE["mail"],
}


def sns(
    kind: str = "Notification",
    message: Any = BOUNCE,
    *,
    version: str = "1",
    key: rsa.RSAPrivateKey = KEY,
    **fields: Any,
) -> dict[str, Any]:
    """An SNS HTTP(S) message as documented, signed over its canonical string."""
    body: dict[str, Any] = {
        "Type": kind,
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": json.dumps(message) if not isinstance(message, str) else message,
        "Timestamp": "2012-05-02T00:54:06.655Z",
        "SignatureVersion": version,
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&x=1",
    }
    if kind == "Notification":
        body["Subject"] = "Amazon SES Email Event Notification"
    else:
        body |= {
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a98",
            "SubscribeURL": SUBSCRIBE_URL,
        }
    body |= {k: v for k, v in fields.items() if k != "Signature"}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    body["Signature"] = (
        fields.get("Signature")
        or base64.b64encode(key.sign(canonical(body), padding.PKCS1v15(), algorithm)).decode()
    )
    return body


class AWS:
    """A MockTransport handler standing in for sns.<region>.amazonaws.com."""

    def __init__(self) -> None:
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        if str(request.url) == CERT_URL:
            return httpx.Response(200, content=CERT)
        if str(request.url).startswith("https://sns.us-west-2.amazonaws.com/?Action=Confirm"):
            return httpx.Response(200, text="<ConfirmSubscriptionResponse/>")
        return httpx.Response(404)


@pytest.fixture
def aws() -> AWS:
    return AWS()


@pytest.fixture
def ses(make_service: MakeService, aws: AWS) -> Service:
    client = httpx.Client(transport=httpx.MockTransport(aws))
    service = make_service(environ=ENV, http_client=client)
    for email in ("jane@example.com", "richard@example.com"):
        subscribers.add(service.db, email)
    return service


def post(service: Service, message: dict[str, Any]) -> httpx.Response:
    return service.client.post(
        "/webhooks/ses",
        content=json.dumps(message),
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
        },
    )


def status(service: Service, email: str) -> SubscriberStatus:
    sub = subscribers.get(service.db, email)
    assert sub is not None
    return sub.status


@pytest.mark.parametrize("version", ["1", "2"])
def test_bounce_and_complaint_with_both_signature_versions(ses: Service, aws: AWS, version):
    answer = post(ses, sns(message=BOUNCE, version=version))
    assert answer.status_code == 200 and answer.json()["applied"] == 1
    assert status(ses, "jane@example.com") is SubscriberStatus.BOUNCED
    answer = post(ses, sns(message=COMPLAINT, version=version, MessageId="second"))
    assert answer.status_code == 200
    assert status(ses, "richard@example.com") is SubscriberStatus.COMPLAINED
    assert aws.requests == [CERT_URL]  # fetched once, then cached


def test_a_message_without_subject_is_signed_without_it(ses: Service):
    message = sns(message=BOUNCE)
    del message["Subject"]  # SNS leaves it out when the publisher gave none
    assert b"Subject" not in canonical(message)
    message["Signature"] = base64.b64encode(
        KEY.sign(canonical(message), padding.PKCS1v15(), hashes.SHA1())
    ).decode()
    assert post(ses, message).status_code == 200
    assert status(ses, "jane@example.com") is SubscriberStatus.BOUNCED


def test_transient_bounces_are_ignored(ses: Service):
    soft = {
        **BOUNCE,
        "bounce": {**BOUNCE["bounce"], "bounceType": "Transient", "bounceSubType": "MailboxFull"},
    }
    answer = post(ses, sns(message=soft))
    assert answer.json() == {"ok": True, "applied": 0, "ignored": 1}
    assert status(ses, "jane@example.com") is SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    "change",
    [
        {"Signature": base64.b64encode(b"x" * 256).decode()},  # not a signature of this message
        {
            "Message": json.dumps(
                {
                    **BOUNCE,
                    "bounce": {
                        **BOUNCE["bounce"],
                        "bouncedRecipients": [{"emailAddress": "richard@example.com"}],
                    },
                }
            )
        },  # altered after signing
        {"SignatureVersion": "3"},
    ],
)
def test_bad_signatures_are_refused(ses: Service, change: dict[str, Any]):
    message = sns(message=BOUNCE) | change
    assert post(ses, message).status_code == 403
    assert status(ses, "jane@example.com") is SubscriberStatus.ACTIVE
    assert status(ses, "richard@example.com") is SubscriberStatus.ACTIVE


def test_a_message_signed_with_another_key_is_refused(ses: Service):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert post(ses, sns(message=BOUNCE, key=other)).status_code == 403
    assert status(ses, "jane@example.com") is SubscriberStatus.ACTIVE


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/SimpleNotificationService-1.pem",
        "http://sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-west-2.amazonaws.com.evil.example/SimpleNotificationService-1.pem",
        "https://user@sns.us-west-2.amazonaws.com/SimpleNotificationService-1.pem",
        "https://sns.us-west-2.amazonaws.com:8443/SimpleNotificationService-1.pem",
        "https://sns.us-west-2.amazonaws.com/cert.txt",
    ],
)
def test_certificates_only_from_sns_hosts_and_never_fetched_otherwise(
    ses: Service, aws: AWS, url: str
):
    answer = post(ses, sns(message=BOUNCE, SigningCertURL=url))
    assert answer.status_code == 403 and aws.requests == []
    assert status(ses, "jane@example.com") is SubscriberStatus.ACTIVE


def test_url_rules():
    assert is_sns_url(CERT_URL, pem=True)
    assert is_sns_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem", pem=True)
    assert not is_sns_url("https://sns.us-west-2.amazonaws.com:bad/x.pem", pem=True)


def test_an_unexpected_topic_is_refused_before_anything_is_fetched(ses: Service, aws: AWS):
    message = sns(message=BOUNCE, TopicArn="arn:aws:sns:us-west-2:999999999999:attacker")
    assert post(ses, message).status_code == 403 and aws.requests == []


def test_subscription_confirmation_visits_subscribe_url(ses: Service, aws: AWS):
    answer = post(
        ses,
        sns(
            "SubscriptionConfirmation",
            f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm "
            "the subscription, visit the SubscribeURL included in this message.",
        ),
    )
    assert answer.status_code == 200
    assert aws.requests == [CERT_URL, SUBSCRIBE_URL]


def test_a_forged_subscription_confirmation_is_not_followed(ses: Service, aws: AWS):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert post(ses, sns("SubscriptionConfirmation", "hello", key=other)).status_code == 403
    evil = sns(
        "SubscriptionConfirmation", "hello", SubscribeURL="https://internal.example/admin?drop=all"
    )
    assert post(ses, evil).status_code == 403
    assert SUBSCRIBE_URL not in aws.requests and not any("internal" in u for u in aws.requests)


def test_duplicate_deliveries_are_applied_once(ses: Service):
    message = sns(message=BOUNCE)
    assert post(ses, message).json()["applied"] == 1
    subscribers.reactivate(ses.db, "jane@example.com")
    assert post(ses, message).json() == {"ok": True, "duplicate": True}
    assert status(ses, "jane@example.com") is SubscriberStatus.ACTIVE


def test_without_topics_the_endpoint_is_off(make_service: MakeService):
    service = make_service()
    assert post(service, sns(message=BOUNCE)).status_code == 404
