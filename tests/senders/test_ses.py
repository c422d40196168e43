"""SES v2 sender against the documented SendEmail request, SigV4 and error answers."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from newsletter.clock import FixedClock, set_clock
from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Outcome
from newsletter.senders.ses import SESSender
from newsletter.senders.sigv4 import Credentials, sign
from tests.senders import Recorder, json_of, make_message, make_messages, raise_, token_of

KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"
ENV = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
URL = "https://email.eu-west-1.amazonaws.com/v2/email/outbound-emails"
REJECTED = "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/"


@pytest.fixture(autouse=True)
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(datetime(2024, 1, 1, 8, 0, tzinfo=UTC))
    set_clock(fixed)
    yield fixed
    set_clock(None)


def check_request(request: httpx.Request, token: str = "") -> tuple[dict[str, Any], Any]:
    """The documented SendEmail call, signed for ses/eu-west-1; returns (body, parsed MIME)."""
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["X-Amz-Date"] == "20240101T080000Z"
    auth = request.headers["Authorization"]
    prefix = f"AWS4-HMAC-SHA256 Credential={KEY_ID}/20240101/eu-west-1/ses/aws4_request, "
    assert auth.startswith(prefix)
    signed = auth.split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    expected = ["content-type", "host", "x-amz-date"] + (["x-amz-security-token"] * bool(token))
    assert signed == expected
    if token:
        assert request.headers["X-Amz-Security-Token"] == token
    # Re-sign what was actually sent: the signature must cover these exact headers and body.
    again = sign(
        "POST",
        str(request.url),
        {h: request.headers[h] for h in signed},
        request.content,
        Credentials(KEY_ID, SECRET, token),
        "eu-west-1",
        "ses",
        datetime(2000, 1, 1, tzinfo=UTC),
    )
    assert again.authorization == auth
    body = json_of(request)
    assert set(body) <= {"Destination", "Content", "ConfigurationSetName"}
    (to,) = body["Destination"]["ToAddresses"]
    raw = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
    mime = email.message_from_bytes(raw, policy=email.policy.default)
    n = to.removeprefix("reader").split("@", 1)[0]
    assert to == f"reader{n}@example.org"
    assert token_of(str(mime["List-Unsubscribe"])) == f"TOKEN{n}"
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Message-ID"] == f"<7.{n}@papers.example.org>"
    return body, mime


def accept(request: httpx.Request) -> httpx.Response:
    body, _ = check_request(request)
    to = body["Destination"]["ToAddresses"][0]
    return httpx.Response(200, json={"MessageId": f"0102018c-{to}"})


def error(
    status: int,
    kind: str,
    message: str,
    *,
    header: bool = True,
    headers: dict[str, str] | None = None,
) -> Callable[..., httpx.Response]:
    """An SES v2 error: type in ``x-amzn-ErrorType`` (or ``__type``), ``message`` in the body."""

    extra = headers or {}

    def respond(request: httpx.Request) -> httpx.Response:
        check_request(request, token=request.headers.get("X-Amz-Security-Token", ""))
        if header:
            return httpx.Response(
                status, json={"message": message}, headers={"x-amzn-ErrorType": kind, **extra}
            )
        return httpx.Response(status, json={"__type": kind, "message": message}, headers=extra)

    return respond


def make(
    respond: Callable[..., httpx.Response], env: dict[str, str] | None = None, **options: Any
) -> tuple[SESSender, Recorder]:
    recorder = Recorder(respond)
    sender = SESSender.from_options(
        {"_root": "/tmp", "region": "eu-west-1", **options},
        ENV if env is None else env,
        client=recorder.client(),
    )
    return sender, recorder


def test_registry_knows_ses() -> None:
    assert sender_class("ses") is SESSender
    assert SESSender.max_batch == 1


def test_happy_path_sends_signed_raw_mime() -> None:
    sender, recorder = make(accept)
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert results[1].provider_id == "0102018c-reader1@example.org"
    _, mime = check_request(recorder.requests[2])
    html = mime.get_body(("html",))
    assert html is not None and "TOKEN2" in html.get_content()


def test_more_messages_than_max_batch_are_split_into_requests() -> None:
    sender, recorder = make(accept)
    assert len(sender.send(make_messages(4))) == 4
    assert len(recorder.requests) == 4


def test_session_token_and_configuration_set() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        body, _ = check_request(request, token=TOKEN)
        assert body["ConfigurationSetName"] == "newsletter"
        return httpx.Response(200, json={"MessageId": "m"})

    sender, _ = make(respond, {**ENV, "AWS_SESSION_TOKEN": TOKEN}, configuration_set="newsletter")
    assert sender.send([make_message(0)])[0].ok


def test_partial_failure_message_rejected_is_permanent_for_that_message() -> None:
    rejected = error(
        400,
        REJECTED,
        "Email address is not verified. The following identities "
        "failed the check in region EU-WEST-1: reader1@example.org",
    )

    def respond(request: httpx.Request) -> httpx.Response:
        if b"reader1@" in request.content:
            return rejected(request)
        return accept(request)

    sender, _ = make(respond)
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert results[1].error.startswith("ses: HTTP 400: MessageRejected: Email address is not")


def test_429_too_many_requests_with_retry_after_is_transient() -> None:
    sender, recorder = make(
        error(429, "TooManyRequestsException", "Too many requests.", headers={"Retry-After": "2"})
    )
    results = sender.send(make_messages(3))
    assert len(recorder.requests) == 1
    assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.TRANSIENT, 2.0)}
    assert "TooManyRequestsException" in results[0].error


def test_throttling_reported_as_400_is_still_transient() -> None:
    sender, _ = make(
        error(400, "ThrottlingException", "Maximum sending rate exceeded.", header=False)
    )
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT
    assert result.error == ("ses: HTTP 400: ThrottlingException: Maximum sending rate exceeded.")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    sender, _ = make(error(status, "InternalFailure", "Internal failure."))
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT
    assert "InternalFailure" in result.error


def test_malformed_json_is_transient() -> None:
    sender, _ = make(lambda r: httpx.Response(200, text='{"MessageId": '))
    assert sender.send([make_message(0)])[0].outcome is Outcome.TRANSIENT


def test_timeout_is_transient() -> None:
    sender, _ = make(raise_(httpx.ReadTimeout("timed out")))
    (result,) = sender.send([make_message(0)])
    assert (result.outcome, result.error) == (Outcome.TRANSIENT, "ses: timed out (ReadTimeout)")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (403, "SignatureDoesNotMatch"),
        (403, "UnrecognizedClientException"),
        (401, "MissingAuthenticationToken"),
        (400, "AccountSuspendedException"),
        (400, "SendingPausedException"),
        (400, "MailFromDomainNotVerifiedException"),
    ],
)
def test_sender_wide_errors_raise_without_leaking_secrets(status: int, kind: str) -> None:
    message = f"The request signature we calculated does not match. {SECRET} {TOKEN}"
    sender, _ = make(error(status, kind, message), {**ENV, "AWS_SESSION_TOKEN": TOKEN})
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    text = "\n".join(info.value.lines())
    assert kind in text
    assert SECRET not in text and TOKEN not in text


def test_from_options_region_from_environment_and_problems_together() -> None:
    sender = SESSender.from_options({}, {**ENV, "AWS_REGION": "us-east-2"})
    assert sender.url == "https://email.us-east-2.amazonaws.com/v2/email/outbound-emails"
    sender.close()
    with pytest.raises(ConfigError) as info:
        SESSender.from_options(
            {"region": "Frankfurt", "secret_access_key_env": "MY_SECRET"},
            {"AWS_ACCESS_KEY_ID": KEY_ID},
        )
    text = "\n".join(info.value.lines())
    assert "'Frankfurt' is not an AWS region" in text
    assert "MY_SECRET is not set" in text
    assert KEY_ID not in text
    with pytest.raises(ConfigError) as info:
        SESSender.from_options({}, ENV)
    assert "region: is required" in "\n".join(info.value.lines())
