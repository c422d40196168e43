"""Amazon SES bounce and complaint notifications, delivered by SNS (signature-verified)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from typing import Any

import httpx
from starlette.datastructures import Headers

from newsletter.serve.services import Services
from newsletter.serve.webhooks import Batch, Event, Kind, WebhookError, json_body, text
from newsletter.serve.webhooks.sns import CertLoader, Verifier, http_loader, is_sns_url

log = logging.getLogger("newsletter.serve.webhooks")
TOPICS_ENV = "NEWSLETTER_SES_TOPIC_ARNS"  # comma-separated: the only topics we accept


@dataclass
class SES:
    name = "ses"
    topics: frozenset[str]
    loader: CertLoader | None = None  # None: fetch with the app's httpx client
    _verifier: Verifier | None = field(default=None, repr=False)

    def verifier(self, client: httpx.Client) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier(self.loader or http_loader(client))
        return self._verifier

    def __call__(self, services: Services, headers: Headers, body: bytes) -> Batch:
        message = json_body(body)  # SNS posts JSON as text/plain
        if not isinstance(message, dict):
            raise WebhookError(400, "expected an SNS message")
        # Anyone can create a topic and sign with Amazon's keys: only ours count.
        if text(message.get("TopicArn")) not in self.topics:
            raise WebhookError(403, "unexpected TopicArn")
        self.verifier(services.http).verify(message)
        kind = text(message.get("Type"))
        if kind == "SubscriptionConfirmation":
            confirm_subscription(services.http, message)
            return Batch(ignored=1)
        if kind != "Notification":
            log.info("SNS %s for %s", kind, message.get("TopicArn"))
            return Batch(ignored=1)
        try:
            notification = json.loads(text(message.get("Message")))
        except ValueError:
            raise WebhookError(400, "the SNS Message is not an SES notification") from None
        batch = parse(notification if isinstance(notification, dict) else {})
        return Batch(
            batch.events, delivery_id=text(message.get("MessageId")), ignored=batch.ignored
        )


def confirm_subscription(client: httpx.Client, message: Mapping[str, Any]) -> None:
    """Visit SubscribeURL (only ever an SNS URL) so SNS starts delivering notifications."""
    url = text(message.get("SubscribeURL"))
    if not is_sns_url(url):
        raise WebhookError(403, "SubscribeURL is not an Amazon SNS URL")
    try:
        client.get(url, follow_redirects=False, timeout=10.0).raise_for_status()
    except httpx.HTTPError as exc:
        raise WebhookError(502, f"could not confirm the SNS subscription: {exc}") from exc
    log.info("confirmed the SNS subscription to %s", message.get("TopicArn"))


def parse(data: Mapping[str, Any]) -> Batch:
    """An SES notification (notificationType) or event-publishing record (eventType)."""
    kind = text(data.get("notificationType")) or text(data.get("eventType"))
    if kind == "Bounce":
        bounce = data.get("bounce")
        bounce = bounce if isinstance(bounce, dict) else {}
        if bounce.get("bounceType") != "Permanent":  # Transient, Undetermined: retried mail
            return Batch(ignored=1)
        detail = text(bounce.get("bounceSubType"))
        return Batch(
            [
                Event(_address(r), Kind.BOUNCE, detail)
                for r in _list(bounce.get("bouncedRecipients"))
            ]
        )
    if kind == "Complaint":
        complaint = data.get("complaint")
        complaint = complaint if isinstance(complaint, dict) else {}
        if complaint.get("complaintFeedbackType") == "not-spam":
            return Batch(ignored=1)
        return Batch(
            [
                Event(_address(r), Kind.COMPLAINT, "complaint")
                for r in _list(complaint.get("complainedRecipients"))
            ]
        )
    return Batch(ignored=1)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _address(recipient: Any) -> str:
    value = text(recipient.get("emailAddress")) if isinstance(recipient, dict) else ""
    return parseaddr(value)[1] or value  # SES may include a display name


def from_env(environ: Mapping[str, str], loader: CertLoader | None = None) -> SES | None:
    topics = frozenset(t.strip() for t in environ.get(TOPICS_ENV, "").split(",") if t.strip())
    return SES(topics, loader) if topics else None
