"""Mailgun sender against the documented /v3/<domain>/messages.mime request and answers."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Outcome
from newsletter.senders.mailgun import MailgunSender
from tests.senders import Recorder, make_message, make_messages, raise_, token_of

KEY = "key-0123456789abcdefSECRET"
ENV = {"MAILGUN_API_KEY": KEY}
DOMAIN = "mg.papers.example.org"
URL = f"https://api.mailgun.net/v3/{DOMAIN}/messages.mime"


def form_parts(request: httpx.Request) -> dict[str, tuple[str, str, bytes]]:
    """multipart/form-data → {field: (filename, content type, bytes)}, parsed by hand."""
    ctype = request.headers["Content-Type"]
    assert ctype.startswith("multipart/form-data; boundary=")
    boundary = ctype.split("boundary=", 1)[1].encode()
    parts: dict[str, tuple[str, str, bytes]] = {}
    for chunk in request.content.split(b"--" + boundary)[1:-1]:
        head, _, body = chunk.strip(b"\r\n").partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n"))
        disposition = headers["Content-Disposition"]
        name = disposition.split('name="', 1)[1].split('"', 1)[0]
        filename = (
            disposition.split('filename="', 1)[1].split('"', 1)[0]
            if ("filename=" in disposition)
            else ""
        )
        parts[name] = (filename, headers.get("Content-Type", ""), body)
    return parts


def check_request(request: httpx.Request) -> tuple[dict[str, Any], EmailMessage]:
    """What the messages.mime reference asks: basic auth, ``to`` and a ``message`` file."""
    assert request.method == "POST"
    assert str(request.url) == URL
    expected = base64.b64encode(f"api:{KEY}".encode()).decode()
    assert request.headers["Authorization"] == f"Basic {expected}"
    parts = form_parts(request)
    assert set(parts) <= {"to", "message", "o:tag"}
    filename, ctype, raw = parts["message"]
    assert filename and ctype == "message/rfc822"  # sent as a file upload, as required
    mime = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(mime, EmailMessage)
    to = parts["to"][2].decode()
    n = to.removeprefix("reader").split("@", 1)[0]
    assert to == f"reader{n}@example.org"
    # The exact per-recipient headers we built, untouched.
    assert token_of(str(mime["List-Unsubscribe"])) == f"TOKEN{n}"
    assert mime["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mime["Message-ID"] == f"<7.{n}@papers.example.org>"
    assert f"reader{n}@example.org" in str(mime["To"])
    return {k: v[2].decode() for k, v in parts.items() if k != "message"}, mime


def accept(request: httpx.Request) -> httpx.Response:
    fields, _ = check_request(request)
    return httpx.Response(
        200,
        json={"id": f"<20240101080000.{fields['to']}@{DOMAIN}>", "message": "Queued. Thank you."},
    )


def make(respond: Callable[..., httpx.Response], **options: Any) -> tuple[MailgunSender, Recorder]:
    recorder = Recorder(respond)
    sender = MailgunSender.from_options(
        {"_root": "/tmp", "domain": DOMAIN, **options}, ENV, client=recorder.client()
    )
    return sender, recorder


def test_registry_knows_mailgun() -> None:
    assert sender_class("mailgun") is MailgunSender
    assert MailgunSender.max_batch == 1


def test_happy_path_sends_each_messages_own_mime() -> None:
    sender, recorder = make(accept)
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    assert results[2].provider_id == f"20240101080000.reader2@example.org@{DOMAIN}"
    _, mime = check_request(recorder.requests[1])
    body = mime.get_body(("plain",))
    assert body is not None and "TOKEN1" in body.get_content()


def test_more_messages_than_max_batch_are_split_into_requests() -> None:
    sender, recorder = make(accept)
    results = sender.send(make_messages(4))
    assert len(recorder.requests) == 4
    assert [r.message_id for r in results] == [f"<7.{i}@papers.example.org>" for i in range(4)]


def test_tag_and_eu_region_options() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == f"https://api.eu.mailgun.net/v3/{DOMAIN}/messages.mime"
        assert form_parts(request)["o:tag"][2] == b"weekly"
        return httpx.Response(200, json={"id": "<x@y>", "message": "Queued. Thank you."})

    sender, _ = make(respond, tag="weekly", base_url="https://api.eu.mailgun.net")
    assert sender.send([make_message(0)])[0].provider_id == "x@y"


def test_partial_failure_only_fails_the_bad_message() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        fields, _ = check_request(request)
        if fields["to"] == "reader1@example.org":
            return httpx.Response(
                400,
                json={"message": "to parameter is not a valid address. please check documentation"},
            )
        return accept(request)

    sender, _ = make(respond)
    results = sender.send(make_messages(3))
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.PERMANENT, Outcome.SENT]
    assert results[1].error == (
        "mailgun: HTTP 400: to parameter is not a valid address. please check documentation"
    )


def test_429_with_retry_after_is_transient() -> None:
    sender, recorder = make(
        lambda r: httpx.Response(
            429, headers={"Retry-After": "20"}, json={"message": "Too many requests"}
        )
    )
    results = sender.send(make_messages(3))
    assert len(recorder.requests) == 1
    assert {(r.outcome, r.retry_after) for r in results} == {(Outcome.TRANSIENT, 20.0)}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(status: int) -> None:
    sender, _ = make(lambda r: httpx.Response(status, json={"message": "Internal Server Error"}))
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT
    assert result.error == f"mailgun: HTTP {status}: Internal Server Error"


def test_malformed_json_is_transient() -> None:
    sender, _ = make(lambda r: httpx.Response(200, text='{"id": "<x@y>", "mess'))
    assert sender.send([make_message(0)])[0].outcome is Outcome.TRANSIENT


def test_timeout_is_transient() -> None:
    sender, _ = make(raise_(httpx.ReadTimeout("timed out")))
    (result,) = sender.send([make_message(0)])
    assert (result.outcome, result.error) == (Outcome.TRANSIENT, "mailgun: timed out (ReadTimeout)")


def test_401_raises_without_leaking_the_key() -> None:
    sender, _ = make(lambda r: httpx.Response(401, text=f"Forbidden {KEY}"))
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    text = "\n".join(info.value.lines())
    assert KEY not in text
    assert base64.b64encode(f"api:{KEY}".encode()).decode() not in text
    assert "(HTTP 401): Forbidden ***" in text and "$MAILGUN_API_KEY" in text


def test_unknown_domain_raises_with_a_region_hint() -> None:
    sender, _ = make(lambda r: httpx.Response(404, json={"message": f"Domain not found: {DOMAIN}"}))
    with pytest.raises(PermanentSendError) as info:
        sender.send([make_message(0)])
    assert "not found" in str(info.value)
    assert "api.eu.mailgun.net" in (info.value.hint or "")


def test_from_options_requires_a_valid_domain() -> None:
    with pytest.raises(ConfigError) as info:
        MailgunSender.from_options({}, {})
    text = "\n".join(info.value.lines())
    assert "domain: is required" in text and "MAILGUN_API_KEY is not set" in text
    with pytest.raises(ConfigError) as info:
        MailgunSender.from_options({"domain": "https://mg.example.org/"}, ENV)
    assert "is not a domain name" in "\n".join(info.value.lines())
