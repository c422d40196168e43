"""Amazon SES v2: one signed POST /v2/email/outbound-emails per message, raw MIME content.

https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html — we send
``Content.Raw.Data`` = base64 of ``msg.as_bytes()``, so the per-recipient List-Unsubscribe,
List-Unsubscribe-Post and body reach the recipient exactly as built (SES v2 has no batch of
distinct raw messages; SendBulkEmail needs a stored template). Requests are signed with
SigV4 (newsletter/senders/sigv4.py); credentials come only from the environment.

Errors are read from the ``x-amzn-ErrorType`` header or the body's ``__type``/``code`` and
mapped: throttling and 5xx → TRANSIENT; MessageRejected, BadRequestException and other 4xx
→ PERMANENT for that message; errors that stop every message (suspended or paused account,
unverified MAIL FROM domain, bad or expired credentials, unknown configuration set) → raise.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import httpx

from newsletter.clock import now
from newsletter.errors import PermanentSendError
from newsletter.senders.base import Message, Result, permanent, sent, transient
from newsletter.senders.http import HTTPSender, OptionReader, describe_body, json_body
from newsletter.senders.sigv4 import Credentials, sign

PATH = "/v2/email/outbound-emails"
SERVICE = "ses"
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
TRANSIENT_TYPES = frozenset(
    {
        "TooManyRequestsException",
        "ThrottlingException",
        "Throttling",
        "LimitExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalFailure",
    }
)
SENDER_TYPES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)


class SESSender(HTTPSender):
    """Sends raw MIME through the SES v2 API, signed with AWS Signature Version 4."""

    name: ClassVar[str] = "ses"
    max_batch: ClassVar[int] = 1

    def __init__(
        self,
        credentials: Credentials,
        region: str,
        *,
        endpoint: str = "",
        configuration_set: str = "",
        client: httpx.Client | None = None,
        secret_env: str = "",
        timeout: float = 30.0,
    ) -> None:
        secrets = (credentials.secret_access_key, credentials.session_token)
        super().__init__(client=client, secrets=secrets, secret_env=secret_env, timeout=timeout)
        self._credentials = credentials
        self.region = region
        base = endpoint.rstrip("/") or f"https://email.{region}.amazonaws.com"
        self.url = base + PATH
        self.configuration_set = configuration_set

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        r = OptionReader(
            cls.name,
            options,
            environ,
            (
                "region",
                "endpoint",
                "configuration_set",
                "access_key_id_env",
                "secret_access_key_env",
                "session_token_env",
            ),
        )
        default_region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION", "")
        region = r.string("region", default_region)
        if not region:
            r.problem("region", 'is required (or set AWS_REGION), e.g. "eu-west-1"')
        elif not _REGION.match(region):
            r.problem("region", f'{region!r} is not an AWS region name, e.g. "eu-west-1"')
        endpoint = r.url("endpoint", "") if "endpoint" in r.options else ""
        credentials = Credentials(
            r.secret("access_key_id_env", "AWS_ACCESS_KEY_ID"),
            r.secret("secret_access_key_env", "AWS_SECRET_ACCESS_KEY"),
            r.secret("session_token_env", "AWS_SESSION_TOKEN", optional=True),
        )
        configuration_set = r.string("configuration_set", "")
        timeout = r.number("timeout", 30.0)
        r.finish()
        return cls(
            credentials,
            region,
            endpoint=endpoint,
            configuration_set=configuration_set,
            client=kwargs.get("client"),
            timeout=timeout,
            secret_env=r.env_name("secret_access_key_env", "AWS_SECRET_ACCESS_KEY"),
        )

    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        (msg,) = batch  # max_batch is 1
        payload: dict[str, Any] = {
            "Destination": {"ToAddresses": [msg.recipient]},
            "Content": {"Raw": {"Data": base64.b64encode(msg.as_bytes()).decode("ascii")}},
        }
        if self.configuration_set:
            payload["ConfigurationSetName"] = self.configuration_set
        body = json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"}
        signature = sign(
            "POST", self.url, headers, body, self._credentials, self.region, SERVICE, now()
        )
        return self.new_request(
            "POST", self.url, content=body, headers={**headers, **signature.headers}
        )

    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        return [sent(batch[0], str(json_body(response)["MessageId"]))]

    def error_text(self, response: httpx.Response) -> str:
        kind = error_type(response)
        text = describe_body(response)
        return f"{kind}: {text}" if kind else text

    def classify_error(
        self, response: httpx.Response, batch: Sequence[Message]
    ) -> list[Result] | None:
        kind = error_type(response)
        error = self.redact(f"ses: HTTP {response.status_code}: {self.error_text(response)}")
        if kind in SENDER_TYPES:
            raise PermanentSendError(
                error,
                hint="check the SES account, identity and the AWS credentials in the environment",
            )
        if kind in TRANSIENT_TYPES:
            return [transient(m, error, self.retry_after(response)) for m in batch]
        return [permanent(m, error) for m in batch]


def error_type(response: httpx.Response) -> str:
    """``MessageRejected`` from ``x-amzn-ErrorType: MessageRejected:http://…`` or the body."""
    header: str = response.headers.get("x-amzn-ErrorType", "")
    if header:
        return header.split(":", 1)[0].strip()
    try:
        body = json_body(response)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    kind = body.get("__type") or body.get("code") or body.get("Code") or ""
    # "__type" may be namespaced: "com.amazonaws.sesv2#MessageRejected".
    return str(kind).rsplit("#", 1)[-1]
