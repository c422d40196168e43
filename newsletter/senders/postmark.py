"""Postmark: up to 500 messages per POST /email/batch, one result object per message.

https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails — the batch
endpoint answers HTTP 200 even when single messages fail, with an array in request order:
``{"ErrorCode": 0, "Message": "OK", "MessageID": "…", "To": "…", "SubmittedAt": "…"}``.
A request that fails as a whole answers HTTP 422 with one ``{"ErrorCode", "Message"}``.
Error codes (https://postmarkapp.com/developer/api/overview#error-codes) are mapped so that
406 (inactive recipient: hard bounce, spam complaint or manual suppression) suppresses the
address, 300 suppresses it only when Postmark names the address as invalid (a 300 also
covers an empty body, which is our fault, not the recipient's), 429 and 100 (maintenance) are
TRANSIENT, and codes that mean the server or account cannot send at all raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import httpx

from newsletter.errors import PermanentSendError
from newsletter.senders.base import Message, Result, permanent, sent, transient
from newsletter.senders.http import (
    HTTPSender,
    OptionReader,
    display_address,
    extra_headers,
    json_body,
    unencoded,
)

DEFAULT_URL = "https://api.postmarkapp.com"
INACTIVE_RECIPIENT = 406
INVALID_EMAIL_REQUEST = 300
TRANSIENT_CODES = frozenset({100, 429})  # maintenance, rate limit exceeded
# Bad token, sender signature not found / not confirmed, not allowed to send (no credits),
# account pending, account may not send: every message would fail the same way.
SENDER_CODES = frozenset({10, 400, 401, 405, 412, 413})
# Postmark sets these from its own fields; sending them in Headers is rejected or ignored.
RESERVED = ("From", "To", "Cc", "Bcc", "Subject", "Reply-To", "Message-ID", "Date")


class PostmarkSender(HTTPSender):
    """Sends through Postmark's batch endpoint with a Server API token."""

    name: ClassVar[str] = "postmark"
    max_batch: ClassVar[int] = 500

    def __init__(
        self,
        token: str,
        *,
        message_stream: str = "broadcast",
        tag: str = "",
        base_url: str = DEFAULT_URL,
        client: httpx.Client | None = None,
        token_env: str = "",
        timeout: float = 30.0,
    ) -> None:
        super().__init__(client=client, secrets=(token,), secret_env=token_env, timeout=timeout)
        self._token = token
        self.message_stream = message_stream
        self.tag = tag
        self.url = f"{base_url.rstrip('/')}/email/batch"

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        r = OptionReader(
            cls.name, options, environ, ("token_env", "message_stream", "tag", "base_url")
        )
        token = r.secret("token_env", "POSTMARK_SERVER_TOKEN")
        stream = r.string("message_stream", "broadcast", required=True)
        tag = r.string("tag", "")
        if len(tag) > 1000:
            r.problem("tag", "must be at most 1000 characters")
        base_url = r.url("base_url", DEFAULT_URL)
        timeout = r.number("timeout", 30.0)
        r.finish()
        return cls(
            token,
            message_stream=stream,
            tag=tag,
            base_url=base_url,
            client=kwargs.get("client"),
            timeout=timeout,
            token_env=r.env_name("token_env", "POSTMARK_SERVER_TOKEN"),
        )

    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        return self.new_request(
            "POST",
            self.url,
            json=[self._payload(m) for m in batch],
            headers={
                "Accept": "application/json",
                "X-Postmark-Server-Token": self._token,
            },
        )

    def _payload(self, msg: Message) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "From": unencoded(msg.from_header),
            "To": display_address(msg.name, msg.recipient),
            "Subject": msg.subject,
            "HtmlBody": msg.html,
            "TextBody": msg.text,
            "Headers": [{"Name": k, "Value": v} for k, v in extra_headers(msg, RESERVED).items()],
            "MessageStream": self.message_stream,
        }
        if msg.reply_to:
            payload["ReplyTo"] = unencoded(msg.reply_to)
        if self.tag:
            payload["Tag"] = self.tag
        return payload

    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        items = json_body(response)
        if not isinstance(items, list) or len(items) != len(batch):
            raise ValueError(f"expected {len(batch)} results, got {type(items).__name__}")
        results = [self._result(m, item) for m, item in zip(batch, items, strict=True)]
        if all(not r.ok for r in results):
            self._raise_if_sender_wide(items[0])
        return results

    def _result(self, msg: Message, item: Mapping[str, Any]) -> Result:
        code = int(item["ErrorCode"])
        text = str(item.get("Message", ""))
        if code == 0:
            return sent(msg, str(item.get("MessageID", "")))
        return self._failure(msg, code, text)

    def _failure(self, msg: Message, code: int, text: str) -> Result:
        error = f"postmark: error {code}: {text}"
        if code in TRANSIENT_CODES:
            return transient(msg, error)
        if code == INACTIVE_RECIPIENT:
            return permanent(msg, error, hard_bounce=True)
        if code == INVALID_EMAIL_REQUEST:
            return permanent(msg, error, hard_bounce=_names_bad_address(text))
        return permanent(msg, error)

    def _raise_if_sender_wide(self, item: Mapping[str, Any]) -> None:
        # Only when nothing was accepted: raising would lose the record of accepted messages.
        code = item.get("ErrorCode")
        if code in SENDER_CODES:
            raise PermanentSendError(
                self.redact(f"postmark: error {code}: {item.get('Message', '')}"),
                hint="check the sender signature / domain and the account in Postmark",
            )

    def classify_error(
        self, response: httpx.Response, batch: Sequence[Message]
    ) -> list[Result] | None:
        """HTTP 422: the whole request failed with a single ErrorCode."""
        try:
            body = json_body(response)
            code, text = int(body["ErrorCode"]), str(body.get("Message", ""))
        except (ValueError, KeyError, TypeError):
            return None
        self._raise_if_sender_wide(body)
        if code in TRANSIENT_CODES:
            return [self._failure(m, code, text) for m in batch]
        # One code for the whole request says nothing about each address: never suppress.
        return [permanent(m, f"postmark: error {code}: {text}") for m in batch]


def _names_bad_address(text: str) -> bool:
    """Postmark says e.g. "Invalid 'To' address: 'x'." or "Illegal email address 'x'"."""
    lowered = text.lower()
    return "address" in lowered and ("invalid" in lowered or "illegal" in lowered)
