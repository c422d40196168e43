"""Mailgun: one POST /v3/<domain>/messages.mime per message, carrying our exact MIME bytes.

Why not batch sending (``/messages`` with up to 1000 ``to`` and ``recipient-variables``)?
Batch sending submits ONE template for everyone and substitutes ``%recipient.x%`` per
recipient (https://documentation.mailgun.com/docs/mailgun/user-manual/sending-messages/
batch-sending). ``h:List-Unsubscribe`` could take ``<%recipient.unsubscribe%>``, but the
body, subject and Message-ID would have to be a shared template too, and our editions are
rendered per recipient (the unsubscribe link and greeting are in the HTML/text), which the
Message interface gives us only as finished text. A batch also succeeds or fails as a whole
and returns one id for all recipients. ``messages.mime`` instead takes the finished message
(``to`` + ``message`` as a file part,
https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/messages/
post-v3--domain-name--messages-mime), so every recipient gets exactly the List-Unsubscribe,
List-Unsubscribe-Post, Message-ID and body we built, and a result of their own.

Answers: 200 ``{"id": "<…>", "message": "Queued. Thank you."}``; 400 ``{"message": …}``;
401/403 bad key; 404 unknown domain (often a US key against the EU region or vice versa);
429 rate limited; 5xx.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import httpx

from newsletter.errors import PermanentSendError
from newsletter.senders.base import Message, Result, sent
from newsletter.senders.http import HTTPSender, OptionReader, json_body

DEFAULT_URL = "https://api.mailgun.net"  # EU region: https://api.eu.mailgun.net
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE
)


class MailgunSender(HTTPSender):
    """Sends each message's MIME bytes to Mailgun with HTTP basic auth (``api:<key>``)."""

    name: ClassVar[str] = "mailgun"
    max_batch: ClassVar[int] = 1

    def __init__(
        self,
        api_key: str,
        domain: str,
        *,
        base_url: str = DEFAULT_URL,
        tag: str = "",
        client: httpx.Client | None = None,
        api_key_env: str = "",
        timeout: float = 30.0,
    ) -> None:
        credentials = base64.b64encode(f"api:{api_key}".encode()).decode()
        super().__init__(
            client=client, secrets=(api_key, credentials), secret_env=api_key_env, timeout=timeout
        )
        self._authorization = f"Basic {credentials}"
        self.domain = domain
        self.tag = tag
        self.url = f"{base_url.rstrip('/')}/v3/{domain}/messages.mime"

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        r = OptionReader(cls.name, options, environ, ("api_key_env", "domain", "base_url", "tag"))
        api_key = r.secret("api_key_env", "MAILGUN_API_KEY")
        domain = r.string("domain", required=True)
        if domain and not _DOMAIN.match(domain):
            r.problem("domain", f'{domain!r} is not a domain name (e.g. "mg.example.org")')
        base_url = r.url("base_url", DEFAULT_URL)
        tag = r.string("tag", "")
        timeout = r.number("timeout", 30.0)
        r.finish()
        return cls(
            api_key,
            domain,
            base_url=base_url,
            tag=tag,
            client=kwargs.get("client"),
            timeout=timeout,
            api_key_env=r.env_name("api_key_env", "MAILGUN_API_KEY"),
        )

    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        (msg,) = batch  # max_batch is 1
        data: dict[str, str] = {"to": msg.recipient}
        if self.tag:
            data["o:tag"] = self.tag
        return self.new_request(
            "POST",
            self.url,
            data=data,
            headers={"Accept": "application/json", "Authorization": self._authorization},
            # Mailgun wants the MIME as a file part, not a plain form field.
            files={"message": ("message.eml", msg.as_bytes(), "message/rfc822")},
        )

    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        provider_id = str(json_body(response)["id"]).strip().strip("<>")
        return [sent(batch[0], provider_id)]

    def classify_error(
        self, response: httpx.Response, batch: Sequence[Message]
    ) -> list[Result] | None:
        if response.status_code == 404:
            raise PermanentSendError(
                self.redact(
                    f"mailgun: domain {self.domain!r} not found (HTTP 404): "
                    f"{self.error_text(response)}"
                ),
                hint="check [sender.mailgun] domain, and base_url: EU domains need "
                "https://api.eu.mailgun.net",
            )
        return None
