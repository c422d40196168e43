"""Resend: up to 100 messages per POST /emails/batch, permissive validation, idempotent.

https://resend.com/docs/api-reference/emails/send-batch-emails — the body is a JSON array of
``{from, to, subject, html, text, headers, reply_to}``; the answer is ``{"data": [{"id"}…]}``.

How batch errors are reported: by default ("strict") one invalid email fails the whole
request with a single ``{"statusCode", "name", "message"}`` error, so one typo in an address
would bounce a hundred good recipients. We send ``x-batch-validation: permissive``: valid
emails are queued and the invalid ones come back as ``"errors": [{"index", "message"}]``
(0-based positions in our request); ``data`` then holds the ids of the created emails in
request order with the failed positions left out. Errors that still fail the whole request
(422/400 validation, 429 rate limit or daily/monthly quota, 5xx) are mapped by the base.

Every request carries ``Idempotency-Key`` = a hash of its exact body: if a timeout leaves us
unsure and the dispatcher retries the same batch within 24 hours, Resend answers with the
original ids instead of sending twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, ClassVar

import httpx

from newsletter.senders.base import Message, Result, permanent, sent, transient
from newsletter.senders.http import (
    BearerSender,
    display_address,
    extra_headers,
    json_body,
    unencoded,
)

DEFAULT_URL = "https://api.resend.com"
RESERVED = ("From", "To", "Cc", "Bcc", "Subject", "Reply-To")


class ResendSender(BearerSender):
    """Sends through Resend's batch endpoint with a Bearer API key."""

    name: ClassVar[str] = "resend"
    max_batch: ClassVar[int] = 100
    default_url: ClassVar[str] = DEFAULT_URL
    endpoint: ClassVar[str] = "/emails/batch"
    key_env: ClassVar[str] = "RESEND_API_KEY"

    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        body = json.dumps([self._payload(m) for m in batch], ensure_ascii=False).encode()
        return self.new_request(
            "POST",
            self.url,
            content=body,
            headers={
                **self.authorization,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "x-batch-validation": "permissive",
                "Idempotency-Key": "newsletter/" + hashlib.sha256(body).hexdigest(),
            },
        )

    def _payload(self, msg: Message) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "from": unencoded(msg.from_header),
            "to": [display_address(msg.name, msg.recipient)],
            "subject": msg.subject,
            "html": msg.html,
            "text": msg.text,
            "headers": extra_headers(msg, RESERVED),
        }
        if msg.reply_to:
            payload["reply_to"] = unencoded(msg.reply_to)
        return payload

    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        body = json_body(response)
        ids = [str(item["id"]) for item in body["data"]]
        errors: dict[int, str] = {}
        for item in body.get("errors") or []:
            errors[int(item["index"])] = str(item.get("message", "invalid email"))
        if any(not 0 <= i < len(batch) for i in errors):
            raise ValueError(f"error index out of range: {sorted(errors)}")
        ok_positions = [i for i in range(len(batch)) if i not in errors]
        # If the counts disagree we cannot pair ids with messages; the accepted ones were
        # still accepted, so record them as sent without an id rather than send them again.
        paired = len(ids) == len(ok_positions)
        id_of = dict(zip(ok_positions, ids, strict=False)) if paired else {}
        return [
            permanent(m, f"resend: {errors[i]}") if i in errors else sent(m, id_of.get(i, ""))
            for i, m in enumerate(batch)
        ]

    def error_text(self, response: httpx.Response) -> str:
        try:
            body = json_body(response)
            return f"{body['name']}: {body['message']}"
        except (ValueError, KeyError, TypeError):
            return super().error_text(response)

    def classify_error(
        self, response: httpx.Response, batch: Sequence[Message]
    ) -> list[Result] | None:
        """409: the same idempotency key is still being processed; anything else is final."""
        if response.status_code == 409 and "concurrent" in self.error_text(response):
            error = self.redact(f"resend: HTTP 409: {self.error_text(response)}")
            return [transient(m, error, self.retry_after(response)) for m in batch]
        return None
