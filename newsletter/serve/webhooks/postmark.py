"""Postmark webhooks (Bounce, SpamComplaint, SubscriptionChange), authenticated by basic auth.

Postmark does not sign webhooks; its documented protection is HTTP basic auth in the
webhook URL (https://user:password@host/webhooks/postmark), which only HTTPS keeps secret.
Broadcast streams report bounces and complaints as SubscriptionChange only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers

from newsletter.serve.services import Services
from newsletter.serve.webhooks import Batch, Event, Kind, WebhookError, json_body, text

USER_ENV = "NEWSLETTER_POSTMARK_WEBHOOK_USER"
PASSWORD_ENV = "NEWSLETTER_POSTMARK_WEBHOOK_PASSWORD"
# Bounce types that mean the address will not work (Postmark deactivates it as well).
HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
_CHANGE = {
    "HardBounce": Kind.BOUNCE,
    "SpamComplaint": Kind.COMPLAINT,
    "ManualSuppression": Kind.UNSUBSCRIBE,
}  # an unsubscribe is a ManualSuppression


@dataclass
class Postmark:
    name = "postmark"
    user: bytes = field(repr=False)
    password: bytes = field(repr=False)

    def __call__(self, services: Services, headers: Headers, body: bytes) -> Batch:
        self.authenticate(headers.get("authorization", ""))
        data = json_body(body)
        if not isinstance(data, dict):
            raise WebhookError(400, "expected one JSON object per request")
        return parse(data)

    def authenticate(self, header: str) -> None:
        scheme, _, encoded = header.partition(" ")
        user, password = b"", b""
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, ValueError):
                user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        # Both compared (no short circuit), each in constant time.
        ok = hmac.compare_digest(user, self.user) & hmac.compare_digest(password, self.password)
        if not ok:
            raise WebhookError(
                401,
                "authentication required",
                {"WWW-Authenticate": 'Basic realm="newsletter webhooks"'},
            )


def parse(data: Mapping[str, Any]) -> Batch:
    record = text(data.get("RecordType"))
    if record == "Bounce":
        kind_name = text(data.get("Type"))
        if kind_name == "SpamComplaint":
            return Batch([Event(text(data.get("Email")), Kind.COMPLAINT, kind_name)])
        if kind_name in HARD or data.get("Inactive") is True:
            return Batch([Event(text(data.get("Email")), Kind.BOUNCE, kind_name)])
        return Batch(ignored=1)  # soft bounce, auto-responder, DNS error …: retried by mail
    if record == "SpamComplaint":
        return Batch([Event(text(data.get("Email")), Kind.COMPLAINT, "SpamComplaint")])
    if record == "SubscriptionChange":
        reason = text(data.get("SuppressionReason"))
        # A reactivation (SuppressSending false) is never copied: only a confirmed opt-in
        # may lift a suppression here.
        if data.get("SuppressSending") is True and reason in _CHANGE:
            return Batch([Event(text(data.get("Recipient")), _CHANGE[reason], reason)])
    return Batch(ignored=1)


def from_env(environ: Mapping[str, str]) -> Postmark | None:
    user, password = environ.get(USER_ENV, ""), environ.get(PASSWORD_ENV, "")
    if not (user and password):
        return None
    return Postmark(user=user.encode(), password=password.encode())
