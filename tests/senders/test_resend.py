"""Resend batch sender against the documented /emails/batch request and answer shapes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Outcome
from newsletter.senders.resend import ResendSender
from tests.senders import Recorder, json_of, make_message, make_messages, raise_, token_of

KEY = "re_123456789_SECRETabcdef"
ENV = {"RESEND_API_KEY": KEY}
URL = "https://api.resend.com/emails/batch"


def check_request(request: httpx.Request) -> list[dict[str, Any]]:
    """What Resend's batch documentation asks of a request; returns the emails."""
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["x-batch-validation"] == "permissive"
    assert request.headers["User-Agent"]  # Resend rejects requests without one (403)
    expected_key = "newsletter/" + hashlib.sha256(request.content).hexdigest()
    assert request.headers["Idempotency-Key"] == expected_key
    assert len(expected_key) <= 256
    body = json_of(request)
    assert isinstance(body, list) and 1 <= len(body) <= 100
    for email in body:
        assert set(email) == {"from", "to", "subject", "html", "text", "headers", "reply_to"}
        (to,) = email["to"]
        n = to.split("<reader", 1)[1].split("@", 1)[0]
        assert to == f"Reader {n} <reader{n}@example.org>"
        assert token_of(email["headers"]["List-Unsubscribe"]) == f"TOKEN{n}"
        assert email["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert f"TOKEN{n}" in email["html"] and f"TOKEN{n}" in email["text"]
        assert email["reply_to"] == "editors@papers.example.org"
    return body


def answer(errors: dict[int, str] | None = None) -> Callable[..., httpx.Response]:
    """The documented 200 answer; in permissive mode failed positions come as ``errors``."""
    errors = errors or {}

    def respond(request: httpx.Request) -> httpx.Response:
        body = check_request(request)
        data = [{"id": f"id-{email['to'][0]}"} for i, email in enumerate(body) if i not in errors]
        out: dict[str, Any] = {"data": data}
        if errors:
            out["errors"] = [{"index": i, "message": m} for i, m in errors.items()]
        return httpx.Response(200, json=out)

    return respond


def make(respond: Callable[..., httpx.Response]) -> tuple[ResendSender, Recorder]:
    recorder = Recorder(respond)
    return ResendSender.from_options({"_root": "/tmp"}, ENV, client=recorder.client()), recorder


def test_registry_knows_resend() -> None:
    assert sender_class("resend") is ResendSender
    assert ResendSender.max_batch == 100


def test_happy_batch() -> None:
    sender, recorder = make(answer())
    messages = make_messages(3)
    results = sender.send(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.provider_id for r in results] == [
        f"id-Reader {i} <reader{i}@example.org>" for i in range(3)
    ]
    assert json_of(recorder.requests[0])[0]["from"] == "ML 论文周报 <digest@papers.example.org>"


def test_a_batch_larger_than_100_is_split() -> None:
    sender, recorder = make(answer())
    messages = make_messages(250)
    results = sender.send(messages)
    assert [len(json_of(r)) for r in recorder.requests] == [100, 100, 50]
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.ok for r in results)


def test_the_same_batch_gets_the_same_idempotency_key() -> None:
    sender, recorder = make(answer())
    sender.send(make_messages(2))
    sender.send(make_messages(2))
    sender.send(make_messages(3))
    keys = [r.headers["Idempotency-Key"] for r in recorder.requests]
    assert keys[0] == keys[1] != keys[2]


def test_permissive_partial_failure_pairs_ids_with_the_right_messages() -> None:
    sender, _ = make(
        answer(
            {
                1: "Invalid `to` field. The email address needs to follow the "
                "`email@example.com` or `Name <email@example.com>` format."
            }
        )
    )
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert results[0].provider_id == "id-Reader 0 <reader0@example.org>"
    assert results[2].provider_id == "id-Reader 2 <reader2@example.org>"
    assert results[1].error.startswith("resend: Invalid `to` field.")


def test_counts_that_do_not_add_up_still_record_accepted_emails_as_sent() -> None:
    sender, _ = make(lambda r: httpx.Response(200, json={"data": [{"id": "a"}]}))
    results = sender.send(make_messages(2))
    assert [(r.outcome, r.provider_id) for r in results] == [(Outcome.SENT, "")] * 2


def test_an_error_index_outside_the_batch_is_unreadable() -> None:
    sender, _ = make(
        lambda r: httpx.Response(200, json={"data": [], "errors": [{"index": 5, "message": "x"}]})
    )
    assert {r.outcome for r in sender.send(make_messages(2))} == {Outcome.TRANSIENT}


def test_whole_request_validation_error_is_permanent() -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            422,
            json={
                "statusCode": 422,
                "name": "validation_error",
                "message": "The `to` field is missing.",
            },
        )
    )
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.PERMANENT] * 2
    assert results[0].error == "resend: HTTP 422: validation_error: The `to` field is missing."


def test_429_with_retry_after_is_transient() -> None:
    sender, recorder = make(
        lambda r: httpx.Response(
            429,
            headers={"retry-after": "1", "ratelimit-reset": "1"},
            json={
                "statusCode": 429,
                "name": "rate_limit_exceeded",
                "message": "Too many requests. You can only make 2 requests per second.",
            },
        )
    )
    results = sender.send(make_messages(150))
    assert len(recorder.requests) == 1
    assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.TRANSIENT, 1.0)}
    assert "rate_limit_exceeded" in results[0].error


def test_a_concurrent_idempotent_request_is_transient() -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            409,
            json={
                "statusCode": 409,
                "name": "concurrent_idempotent_requests",
                "message": "Same idempotency key used while original request is still in progress.",
            },
        )
    )
    assert {r.outcome for r in sender.send(make_messages(2))} == {Outcome.TRANSIENT}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            status,
            json={
                "statusCode": status,
                "name": "internal_server_error",
                "message": "An unexpected error occurred.",
            },
        )
    )
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert results[0].error == (
        f"resend: HTTP {status}: internal_server_error: An unexpected error occurred."
    )


def test_malformed_json_is_transient() -> None:
    sender, _ = make(lambda r: httpx.Response(200, text='{"data": [{"id": '))
    assert {r.outcome for r in sender.send(make_messages(2))} == {Outcome.TRANSIENT}


def test_timeout_is_transient() -> None:
    sender, _ = make(raise_(httpx.ReadTimeout("timed out")))
    results = sender.send(make_messages(2))
    assert {r.outcome for r in results} == {Outcome.TRANSIENT}
    assert results[0].error == "resend: timed out (ReadTimeout)"


@pytest.mark.parametrize(
    ("status", "name", "message"),
    [
        (401, "missing_api_key", "Missing API key in the authorization header."),
        (403, "invalid_api_key", f"API key is invalid: {KEY}"),
        (403, "validation_error", "You can only send testing emails to your own email address."),
    ],
)
def test_401_and_403_raise_without_leaking_the_key(status: int, name: str, message: str) -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            status, json={"statusCode": status, "name": name, "message": message}
        )
    )
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    text = "\n".join(info.value.lines())
    assert KEY not in text
    assert name in text
    assert "RESEND_API_KEY" in text


def test_from_options_reports_a_missing_key_and_bad_url_together() -> None:
    with pytest.raises(ConfigError) as info:
        ResendSender.from_options({"base_url": "ftp://api.resend.com"}, {})
    text = "\n".join(info.value.lines())
    assert "RESEND_API_KEY is not set" in text and "base_url" in text


def test_reply_to_is_omitted_when_empty() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        (email,) = json_of(request)
        assert "reply_to" not in email
        return httpx.Response(200, json={"data": [{"id": "x"}]})

    sender, _ = make(respond)
    assert sender.send([make_message(0, reply_to="")])[0].ok
