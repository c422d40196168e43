"""Mailgun webhooks: HMAC-SHA256(signing key, timestamp + token) in the body's signature object."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers

from newsletter.serve.services import Services
from newsletter.serve.webhooks import Batch, Event, Kind, WebhookError, json_body, text

KEY_ENV = "NEWSLETTER_MAILGUN_WEBHOOK_SIGNING_KEY"


@dataclass
class Mailgun:
    name = "mailgun"
    key: bytes = field(repr=False)

    def __call__(self, services: Services, headers: Headers, body: bytes) -> Batch:
        data = json_body(body)
        if not isinstance(data, dict):
            raise WebhookError(400, "expected a JSON object")
        signature = data.get("signature")
        signature = signature if isinstance(signature, dict) else {}
        token, timestamp = text(signature.get("token")), text(signature.get("timestamp"))
        if not (token and timestamp and self.genuine(signature)):
            # 406 is the answer Mailgun documents as "rejected, do not retry".
            raise WebhookError(406, "bad signature")
        event_data = data.get("event-data")
        batch = parse(event_data if isinstance(event_data, dict) else {})
        # Mailgun's advice: remember tokens and refuse a request that reuses one.
        return Batch(batch.events, delivery_id=token, ignored=batch.ignored)

    def genuine(self, signature: Mapping[str, Any]) -> bool:
        message = (text(signature.get("timestamp")) + text(signature.get("token"))).encode()
        expected = hmac.new(self.key, message, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected.encode(), text(signature.get("signature")).encode())


def parse(data: Mapping[str, Any]) -> Batch:
    event, email = text(data.get("event")), text(data.get("recipient"))
    if event == "failed" and data.get("severity") == "permanent":
        return Batch([Event(email, Kind.BOUNCE, text(data.get("reason")))])
    if event == "complained":
        return Batch([Event(email, Kind.COMPLAINT, event)])
    if event == "unsubscribed":
        return Batch([Event(email, Kind.UNSUBSCRIBE, event)])
    return Batch(ignored=1)  # temporary failures are retried by Mailgun; the rest is tracking


def from_env(environ: Mapping[str, str]) -> Mailgun | None:
    key = environ.get(KEY_ENV, "")
    return Mailgun(key.encode()) if key else None
