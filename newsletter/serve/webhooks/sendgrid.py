"""SendGrid Signed Event Webhook: ECDSA P-256 over timestamp + body, then bounce/spam events."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.datastructures import Headers

from newsletter.errors import ConfigError
from newsletter.serve.services import Services
from newsletter.serve.webhooks import Batch, Event, Kind, WebhookError, json_body, text

KEY_ENV = "NEWSLETTER_SENDGRID_WEBHOOK_PUBLIC_KEY"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_DROPPED = {
    "Bounced Address": Kind.BOUNCE,
    "Spam Reporting Address": Kind.COMPLAINT,
    "Unsubscribed Address": Kind.UNSUBSCRIBE,
}


@dataclass
class SendGrid:
    name = "sendgrid"
    key: ec.EllipticCurvePublicKey

    def __call__(self, services: Services, headers: Headers, body: bytes) -> Batch:
        signature, timestamp = headers.get(SIGNATURE_HEADER, ""), headers.get(TIMESTAMP_HEADER, "")
        if not (signature and timestamp.isdigit()):
            raise WebhookError(403, f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
        if not verify(self.key, signature, timestamp, body):
            raise WebhookError(403, "bad signature")
        data = json_body(body)
        if not isinstance(data, list):
            raise WebhookError(400, "expected a JSON array of events")
        return parse(data)


def verify(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes) -> bool:
    """The documented check: the signature is over the timestamp header + the raw body."""
    try:
        key.verify(
            base64.b64decode(signature, validate=True),
            timestamp.encode("ascii") + body,
            ec.ECDSA(hashes.SHA256()),
        )
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return True


def parse(events: Sequence[Any]) -> Batch:
    found: list[Event] = []
    ignored = 0
    for item in events:
        data = item if isinstance(item, dict) else {}
        event, email = text(data.get("event")), text(data.get("email"))
        if event == "bounce" and text(data.get("type")) != "blocked":
            # "blocked" is SendGrid's temporary rejection; "bounce" (or none: older payloads)
            # is permanent.
            found.append(Event(email, Kind.BOUNCE, text(data.get("status"))))
        elif event == "spamreport":
            found.append(Event(email, Kind.COMPLAINT, event))
        elif event == "dropped" and text(data.get("reason")) in _DROPPED:
            found.append(
                Event(email, _DROPPED[text(data.get("reason"))], f"dropped: {data.get('reason')}")
            )
        elif event in ("unsubscribe", "group_unsubscribe"):
            found.append(Event(email, Kind.UNSUBSCRIBE, event))
        else:
            ignored += 1
    return Batch(found, ignored=ignored)


def load_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER) or as PEM."""
    try:
        raw = value.strip().encode("ascii")
        key = (
            serialization.load_pem_public_key(raw)
            if raw.startswith(b"-----BEGIN")
            else serialization.load_der_public_key(base64.b64decode(raw, validate=True))
        )
    except (ValueError, binascii.Error, UnicodeEncodeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(
            f"environment variable {KEY_ENV} is not an ECDSA public key",
            hint="copy the Verification Key from SendGrid → Settings → Mail "
            "Settings → Event Webhook (Signed Event Webhook Requests)",
        )
    return key


def from_env(environ: Mapping[str, str]) -> SendGrid | None:
    value = environ.get(KEY_ENV, "")
    return SendGrid(load_key(value)) if value else None
