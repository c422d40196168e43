"""Postmark batch sender against the documented /email/batch request and answer shapes."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Outcome
from newsletter.senders.postmark import PostmarkSender
from tests.senders import Recorder, json_of, make_message, make_messages, raise_, token_of

TOKEN = "pm-server-token-0f9e8d7c"
ENV = {"POSTMARK_SERVER_TOKEN": TOKEN}
URL = "https://api.postmarkapp.com/email/batch"
FIELDS = {"From", "To", "Subject", "HtmlBody", "TextBody", "ReplyTo", "Headers", "MessageStream"}


def check_request(request: httpx.Request) -> list[dict[str, Any]]:
    """Everything Postmark's batch documentation asks of a request; returns the messages."""
    assert request.method == "POST"
    assert str(request.url) == URL
    assert request.headers["X-Postmark-Server-Token"] == TOKEN
    assert request.headers["Accept"] == "application/json"
    body = json_of(request)
    assert isinstance(body, list) and 1 <= len(body) <= 500
    for item in body:
        assert set(item) - {"Tag"} == FIELDS
        assert item["MessageStream"] == "broadcast"
        headers = {h["Name"]: h["Value"] for h in item["Headers"]}
        assert set(headers) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
        # Each recipient's own unsubscribe link, in its own message.
        n = item["To"].split("<reader", 1)[1].split("@", 1)[0]
        assert token_of(headers["List-Unsubscribe"]) == f"TOKEN{n}"
        assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert item["To"] == f"Reader {n} <reader{n}@example.org>"
        assert f"TOKEN{n}" in item["HtmlBody"] and f"TOKEN{n}" in item["TextBody"]
    return body


def answer(codes: dict[int, tuple[int, str]] | None = None) -> Callable[..., httpx.Response]:
    """The documented 200 answer: one result per message, in order; ``codes`` fail some."""
    codes = codes or {}

    def respond(request: httpx.Request) -> httpx.Response:
        body = check_request(request)
        out = []
        for i, item in enumerate(body):
            code, text = codes.get(i, (0, "OK"))
            result = {"ErrorCode": code, "Message": text, "To": item["To"]}
            if code == 0:
                result |= {
                    "MessageID": str(uuid.uuid5(uuid.NAMESPACE_URL, item["To"])),
                    "SubmittedAt": "2024-01-01T08:00:00.0000000-05:00",
                }
            out.append(result)
        return httpx.Response(200, json=out)

    return respond


def make(respond: Callable[..., httpx.Response], **options: Any) -> tuple[PostmarkSender, Recorder]:
    recorder = Recorder(respond)
    sender = PostmarkSender.from_options(
        {"_root": "/tmp", **options}, ENV, client=recorder.client()
    )
    return sender, recorder


def test_registry_knows_postmark() -> None:
    assert sender_class("postmark") is PostmarkSender
    assert PostmarkSender.max_batch == 500


def test_happy_batch() -> None:
    sender, recorder = make(answer())
    messages = make_messages(3)
    results = sender.send(messages)
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert results[1].provider_id == str(
        uuid.uuid5(uuid.NAMESPACE_URL, "Reader 1 <reader1@example.org>")
    )
    item = json_of(recorder.requests[0])[0]
    assert item["From"] == "ML 论文周报 <digest@papers.example.org>"
    assert item["ReplyTo"] == "editors@papers.example.org"
    assert item["Subject"] == "ML 论文周报 第7期"


def test_options_message_stream_and_tag() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        body = json_of(request)
        assert [(m["MessageStream"], m["Tag"]) for m in body] == [("newsletter", "weekly")]
        return httpx.Response(200, json=[{"ErrorCode": 0, "Message": "OK", "MessageID": "m1"}])

    sender, _ = make(respond, message_stream="newsletter", tag="weekly")
    assert sender.send([make_message(0)])[0].provider_id == "m1"


def test_a_batch_larger_than_500_is_split() -> None:
    sender, recorder = make(answer())
    messages = make_messages(1201)
    results = sender.send(messages)
    assert [len(json_of(r)) for r in recorder.requests] == [500, 500, 201]
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert all(r.ok for r in results)


def test_partial_failure_maps_documented_error_codes() -> None:
    sender, _ = make(
        answer(
            {
                1: (
                    406,
                    "You tried to send to recipient(s) that have been marked as inactive. Found "
                    "inactive addresses: reader1@example.org. Inactive recipients are ones that "
                    "have generated a hard bounce, a spam complaint, or a manual suppression.",
                ),
                2: (300, "Invalid 'To' address: 'reader2@example.org'."),
                3: (300, "Provide either email TextBody or HtmlBody or both."),
                4: (429, "Rate limit exceeded."),
            }
        )
    )
    results = sender.send(make_messages(6))
    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.PERMANENT,
        Outcome.PERMANENT,
        Outcome.PERMANENT,
        Outcome.TRANSIENT,
        Outcome.SENT,
    ]
    assert [r.hard_bounce for r in results] == [False, True, True, False, False, False]
    assert results[1].error.startswith("postmark: error 406: You tried to send")
    assert results[3].error == (
        "postmark: error 300: Provide either email TextBody or HtmlBody or both."
    )


def test_sender_wide_error_codes_raise_when_nothing_was_accepted() -> None:
    text = "The 'From' address you supplied is not a Sender Signature on your account."
    sender, _ = make(answer({0: (400, text), 1: (400, text)}))
    with pytest.raises(PermanentSendError, match="error 400"):
        sender.send(make_messages(2))


def test_whole_request_422_is_permanent_without_suppressing_anyone() -> None:
    sender, _ = make(
        lambda r: httpx.Response(422, json={"ErrorCode": 402, "Message": "Invalid JSON"})
    )
    results = sender.send(make_messages(2))
    assert [(r.outcome, r.hard_bounce) for r in results] == [(Outcome.PERMANENT, False)] * 2
    assert results[0].error == "postmark: error 402: Invalid JSON"


def test_whole_request_422_for_an_account_that_may_not_send_raises() -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            422, json={"ErrorCode": 412, "Message": "Your account is pending approval."}
        )
    )
    with pytest.raises(PermanentSendError, match="pending"):
        sender.send(make_messages(2))


def test_429_with_retry_after_is_transient_and_stops_the_run() -> None:
    sender, recorder = make(
        lambda r: httpx.Response(
            429,
            headers={"Retry-After": "60"},
            json={"ErrorCode": 429, "Message": "Rate limit exceeded."},
        )
    )
    results = sender.send(make_messages(700))
    assert len(recorder.requests) == 1
    assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.TRANSIENT, 60.0)}
    assert results[0].error == "postmark: HTTP 429: Rate limit exceeded."


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    sender, _ = make(lambda r: httpx.Response(status, text="<html>Service Unavailable</html>"))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert results[0].error == f"postmark: HTTP {status}: <html>Service Unavailable</html>"


def test_malformed_json_is_transient() -> None:
    sender, _ = make(lambda r: httpx.Response(200, text='[{"ErrorCode": 0,'))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert "unreadable HTTP 200" in results[0].error


def test_a_result_array_of_the_wrong_length_is_transient() -> None:
    sender, _ = make(lambda r: httpx.Response(200, json=[{"ErrorCode": 0, "MessageID": "x"}]))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2


def test_timeout_is_transient() -> None:
    sender, _ = make(raise_(httpx.ReadTimeout("timed out")))
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 3
    assert results[0].error == "postmark: timed out (ReadTimeout)"


def test_401_raises_without_leaking_the_token() -> None:
    sender, _ = make(
        lambda r: httpx.Response(
            401, json={"ErrorCode": 10, "Message": f"Bad or missing Server API token {TOKEN}"}
        )
    )
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    assert TOKEN not in "\n".join(info.value.lines())
    assert "HTTP 401" in str(info.value)
    assert "POSTMARK_SERVER_TOKEN" in (info.value.hint or "")


def test_from_options_reads_the_token_from_the_named_variable() -> None:
    recorder = Recorder(answer())
    sender = PostmarkSender.from_options(
        {"token_env": "PM_TOKEN"}, {"PM_TOKEN": TOKEN}, client=recorder.client()
    )
    assert sender.send([make_message(0)])[0].ok
    assert recorder.requests[0].headers["X-Postmark-Server-Token"] == TOKEN


def test_from_options_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        PostmarkSender.from_options({"token": TOKEN, "message_stream": 5}, {})
    text = "\n".join(info.value.lines())
    assert "token: unknown key" in text
    assert "POSTMARK_SERVER_TOKEN is not set" in text
    assert "message_stream: must be a string" in text
    assert TOKEN not in text
