"""SendGrid: v3 POST /v3/mail/send, one request per message (202 Accepted, X-Message-Id).

Why not one request with many personalizations? A v3 request carries up to 1000
personalizations, and each may have its own ``to``, ``subject``, ``headers`` (so the
List-Unsubscribe header could differ per recipient), ``substitutions`` and ``custom_args``
(https://www.twilio.com/docs/sendgrid/for-developers/sending-email/personalizations). But
``content`` is shared by the whole request, and our rendered editions are already personal:
the unsubscribe link (and often the greeting) sits in the body. Sharing content would need a
body template with substitution tags, which the Message interface deliberately does not
expose (the MJML/HTML is rendered per recipient). A request is also accepted or rejected as a
whole — one bad address would fail up to 1000 good ones — and returns a single X-Message-Id.
So each message is its own request with one personalization: exact per-recipient headers and
body, one result and one message id per recipient. The dispatcher runs several send() calls
in parallel threads, which is where the throughput comes from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from newsletter.clock import now
from newsletter.senders.base import Message, Result, sent
from newsletter.senders.http import (
    BearerSender,
    extra_headers,
    json_body,
    split_address,
    unencoded,
)

DEFAULT_URL = "https://api.sendgrid.com"  # EU regional subusers: https://api.eu.sendgrid.com
# Headers SendGrid does not let a request set (mail send reference, "headers").
RESERVED = (
    "x-sg-id",
    "x-sg-eid",
    "received",
    "dkim-signature",
    "Content-Type",
    "Content-Transfer-Encoding",
    "To",
    "From",
    "Subject",
    "Reply-To",
    "Cc",
    "Bcc",
)


class SendGridSender(BearerSender):
    """Sends each message with one POST /v3/mail/send and a Bearer API key."""

    name: ClassVar[str] = "sendgrid"
    max_batch: ClassVar[int] = 1
    default_url: ClassVar[str] = DEFAULT_URL
    endpoint: ClassVar[str] = "/v3/mail/send"
    key_env: ClassVar[str] = "SENDGRID_API_KEY"

    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        (msg,) = batch  # max_batch is 1
        return self.new_request(
            "POST",
            self.url,
            json=self._payload(msg),
            headers={
                **self.authorization,
                "Accept": "application/json",
            },
        )

    def _payload(self, msg: Message) -> dict[str, Any]:
        to: dict[str, str] = {"email": msg.recipient}
        if msg.name:
            to["name"] = msg.name
        personalization: dict[str, Any] = {
            "to": [to],
            # custom_args come back on every event webhook: ties events to our message.
            "custom_args": {"newsletter_message_id": msg.message_id},
        }
        headers = extra_headers(msg, RESERVED)
        if headers:
            personalization["headers"] = headers
        # SendGrid wants text/plain before text/html and rejects empty values.
        content = [
            {"type": t, "value": v}
            for t, v in (("text/plain", msg.text), ("text/html", msg.html))
            if v
        ]
        payload: dict[str, Any] = {
            "personalizations": [personalization],
            "from": _address(msg.from_header),
            "subject": msg.subject,
            "content": content,
        }
        if msg.reply_to:
            payload["reply_to"] = _address(msg.reply_to)
        return payload

    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        # 202 has an empty body; the id needed to match events arrives as a header.
        return [sent(batch[0], response.headers.get("X-Message-Id", ""))]

    def retry_after(self, response: httpx.Response) -> float | None:
        """Retry-After if present, else X-RateLimit-Reset (a Unix time) minus now."""
        found = super().retry_after(response)
        reset = response.headers.get("X-RateLimit-Reset", "")
        if found is not None or not reset.isdigit():
            return found
        return max(0.0, int(reset) - now().timestamp())

    def error_text(self, response: httpx.Response) -> str:
        # {"errors": [{"message": "…", "field": "…", "help": "…"}]}
        try:
            errors = json_body(response)["errors"]
            parts = [
                f"{e['field']}: {e['message']}" if e.get("field") else str(e["message"])
                for e in errors
            ]
        except (ValueError, KeyError, TypeError):
            return super().error_text(response)
        return "; ".join(parts) or super().error_text(response)


def _address(header: str) -> dict[str, str]:
    name, email = split_address(header)
    out = {"email": email or unencoded(header)}
    if name:
        out["name"] = name
    return out
