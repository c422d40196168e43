"""Resend webhooks, signed by Svix: HMAC-SHA256 of "id.timestamp.body" with the whsec_ secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers

from newsletter import clock
from newsletter.errors import ConfigError
from newsletter.serve.services import Services
from newsletter.serve.webhooks import Batch, Event, Kind, WebhookError, json_body, text

SECRET_ENV = "NEWSLETTER_RESEND_WEBHOOK_SECRET"
TOLERANCE = 5 * 60  # seconds either side, as Svix's own libraries allow


@dataclass
class Resend:
    name = "resend"
    key: bytes = field(repr=False)

    def __call__(self, services: Services, headers: Headers, body: bytes) -> Batch:
        msg_id = headers.get("svix-id", "")
        timestamp = headers.get("svix-timestamp", "")
        if not (msg_id and timestamp.isdigit() and headers.get("svix-signature")):
            raise WebhookError(403, "missing svix-id, svix-timestamp or svix-signature")
        # Svix signs every attempt afresh, so an old timestamp means a replayed request.
        if abs(clock.now().timestamp() - int(timestamp)) > TOLERANCE:
            raise WebhookError(403, "timestamp outside the tolerance window")
        if not self.genuine(msg_id, timestamp, body, headers.get("svix-signature", "")):
            raise WebhookError(403, "bad signature")
        data = json_body(body)
        batch = parse(data if isinstance(data, dict) else {})
        return Batch(batch.events, delivery_id=msg_id, ignored=batch.ignored)

    def genuine(self, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
        signed = f"{msg_id}.{timestamp}.".encode() + body
        expected = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest())
        # Several space-separated "v1,<base64>" entries while a secret is being rotated.
        ok = False
        for entry in header.split():
            version, _, value = entry.partition(",")
            if version == "v1":
                ok |= hmac.compare_digest(expected, value.encode())
        return ok


def parse(data: Mapping[str, Any]) -> Batch:
    kind = text(data.get("type"))
    payload = data.get("data")
    payload = payload if isinstance(payload, dict) else {}
    to = payload.get("to")
    recipients = (
        [to]
        if isinstance(to, str)
        else [text(a) for a in to if text(a)]
        if isinstance(to, list)
        else []
    )
    if kind == "email.bounced":
        bounce = payload.get("bounce")
        bounce = bounce if isinstance(bounce, dict) else {}
        # Resend sends this event for permanent rejections; a "Transient" type, if present,
        # is a soft bounce and is left to retries.
        if text(bounce.get("type")) in ("", "Permanent"):
            detail = text(bounce.get("subType"))
            return Batch([Event(r, Kind.BOUNCE, detail) for r in recipients])
    elif kind == "email.complained":
        return Batch([Event(r, Kind.COMPLAINT, kind) for r in recipients])
    return Batch(ignored=1)


def load_secret(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip().removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            f"environment variable {SECRET_ENV} is not a webhook signing secret",
            hint="copy the signing secret (whsec_…) from Resend → Webhooks",
        ) from None


def from_env(environ: Mapping[str, str]) -> Resend | None:
    value = environ.get(SECRET_ENV, "")
    return Resend(load_secret(value)) if value else None
