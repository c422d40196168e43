"""SendGrid sender against the documented v3 /mail/send request and answer shapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from newsletter.clock import FixedClock, set_clock
from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Outcome
from newsletter.senders.sendgrid import SendGridSender
from tests.senders import Recorder, json_of, make_message, make_messages, raise_, token_of

KEY = "SG.abcdefghijklmnop.SECRET_qrstuvwxyz0123456789"
ENV = {"SENDGRID_API_KEY": KEY}
URL = "https://api.sendgrid.com/v3/mail/send"


def check_request(request: httpx.Request) -> dict[str, Any]:
    """What the v3 Mail Send reference asks of a request; returns its JSON body."""
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    body = json_of(request)
    assert set(body) == {"personalizations", "from", "reply_to", "subject", "content"}
    (p,) = body["personalizations"]  # one message per request
    assert set(p) == {"to", "headers", "custom_args"}
    (to,) = p["to"]
    n = to["email"].removeprefix("reader").split("@", 1)[0]
    assert to == {"email": f"reader{n}@example.org", "name": f"Reader {n}"}
    assert token_of(p["headers"]["List-Unsubscribe"]) == f"TOKEN{n}"
    assert p["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert p["custom_args"] == {"newsletter_message_id": f"<7.{n}@papers.example.org>"}
    assert body["from"] == {"email": "digest@papers.example.org", "name": "ML 论文周报"}
    assert body["reply_to"] == {"email": "editors@papers.example.org"}
    # text/plain must come before text/html; each value is this recipient's own body.
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert all(f"TOKEN{n}" in c["value"] for c in body["content"])
    return dict(body)


def accept(request: httpx.Request) -> httpx.Response:
    """The documented success: 202 Accepted, empty body, the id in X-Message-Id."""
    body = check_request(request)
    email = body["personalizations"][0]["to"][0]["email"]
    return httpx.Response(202, headers={"X-Message-Id": f"msg-{email}"})


def make(respond: Callable[..., httpx.Response]) -> tuple[SendGridSender, Recorder]:
    recorder = Recorder(respond)
    return SendGridSender.from_options({"_root": "/tmp"}, ENV, client=recorder.client()), recorder


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(datetime(2024, 1, 1, 8, 0, tzinfo=UTC))
    set_clock(fixed)
    yield fixed
    set_clock(None)


def test_registry_knows_sendgrid() -> None:
    assert sender_class("sendgrid") is SendGridSender
    assert SendGridSender.max_batch == 1


def test_happy_path_one_request_per_message() -> None:
    sender, recorder = make(accept)
    messages = make_messages(3)
    results = sender.send(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_id for r in results] == [f"msg-reader{i}@example.org" for i in range(3)]
    assert json_of(recorder.requests[0])["subject"] == "ML 论文周报 第7期"


def test_more_messages_than_max_batch_are_split_into_requests() -> None:
    sender, recorder = make(accept)
    results = sender.send(make_messages(5))
    assert len(recorder.requests) == 5
    assert [r.message_id for r in results] == [f"<7.{i}@papers.example.org>" for i in range(5)]


def test_partial_failure_only_fails_the_bad_message() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        body = check_request(request)
        if body["personalizations"][0]["to"][0]["email"] == "reader1@example.org":
            return httpx.Response(
                400,
                json={
                    "errors": [
                        {
                            "message": "Does not contain a valid address.",
                            "field": "personalizations.0.to.0.email",
                            "help": "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html",
                        }
                    ]
                },
            )
        return accept(request)

    sender, _ = make(respond)
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert results[1].error == (
        "sendgrid: HTTP 400: personalizations.0.to.0.email: Does not contain a valid address."
    )


def test_429_uses_retry_after_or_the_rate_limit_reset_time(clock: FixedClock) -> None:
    reset = int(clock.at.timestamp()) + 45
    sender, recorder = make(
        lambda r: httpx.Response(
            429,
            headers={
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            },
            json={"errors": [{"field": None, "message": "too many requests"}]},
        )
    )
    results = sender.send(make_messages(3))
    assert len(recorder.requests) == 1  # the rest are not attempted
    assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.TRANSIENT, 45.0)}
    assert results[0].error == "sendgrid: HTTP 429: too many requests"
    sender, _ = make(lambda r: httpx.Response(429, headers={"Retry-After": "5"}, json={}))
    assert sender.send([make_message(0)])[0].retry_after == 5.0


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    sender, _ = make(lambda r: httpx.Response(status, text="<html><h1>Bad Gateway</h1></html>"))
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT
    assert result.error == f"sendgrid: HTTP {status}: <html><h1>Bad Gateway</h1></html>"


def test_malformed_json_error_body_still_maps_by_status() -> None:
    sender, _ = make(lambda r: httpx.Response(503, text='{"errors": [{"message": '))
    assert sender.send([make_message(0)])[0].outcome is Outcome.TRANSIENT
    sender, _ = make(lambda r: httpx.Response(400, text='{"errors": [{"message": '))
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.PERMANENT
    assert '{"errors"' in result.error


def test_timeout_is_transient() -> None:
    sender, _ = make(raise_(httpx.ReadTimeout("timed out")))
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT
    assert result.error == "sendgrid: timed out (ReadTimeout)"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "The provided authorization grant is invalid, expired, or revoked"),
        (403, "The from address does not match a verified Sender Identity."),
    ],
)
def test_401_and_403_raise_without_leaking_the_key(status: int, message: str) -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            status, json={"errors": [{"field": None, "message": f"{message} ({KEY})"}]}
        )
    )
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    text = "\n".join(info.value.lines())
    assert KEY not in text and message in text
    assert "SENDGRID_API_KEY" in text


def test_empty_parts_and_reserved_headers_are_left_out() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        body = json_of(request)
        assert body["content"] == [{"type": "text/html", "value": "<p>hi</p>"}]
        assert body["personalizations"][0]["headers"] == {"List-Id": "<weekly.example.org>"}
        assert "reply_to" not in body
        return httpx.Response(202, headers={"X-Message-Id": "x"})

    sender, _ = make(respond)
    msg = make_message(
        0,
        text="",
        html="<p>hi</p>",
        reply_to="",
        headers={"List-Id": "<weekly.example.org>", "Subject": "spoof"},
    )
    assert sender.send([msg])[0].ok


def test_eu_base_url_and_missing_key_are_reported() -> None:
    recorder = Recorder(lambda r: httpx.Response(202, headers={"X-Message-Id": "eu"}))
    sender = SendGridSender.from_options(
        {"base_url": "https://api.eu.sendgrid.com"}, ENV, client=recorder.client()
    )
    assert sender.send([make_message(0)])[0].provider_id == "eu"
    assert str(recorder.requests[0].url) == "https://api.eu.sendgrid.com/v3/mail/send"
    with pytest.raises(ConfigError) as info:
        SendGridSender.from_options({}, {})
    assert "SENDGRID_API_KEY is not set" in "\n".join(info.value.lines())
