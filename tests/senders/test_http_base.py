"""The shared HTTP sender base: batching, status mapping, Retry-After, redaction, options."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import httpx
import pytest

from newsletter.clock import FixedClock, set_clock
from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders.base import Message, Outcome, Result, sent
from newsletter.senders.http import (
    USER_AGENT,
    HTTPSender,
    OptionReader,
    display_address,
    extra_headers,
    json_body,
    make_client,
    parse_retry_after,
    split_address,
    unencoded,
)
from tests.senders import Recorder, make_message, make_messages, raise_

KEY = "sk_live_SECRET_1234567890"


class EchoSender(HTTPSender):
    """A minimal provider: POST {"to": [...]} and expect {"ids": [...]} back."""

    name: ClassVar[str] = "echo"
    max_batch: ClassVar[int] = 3

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], environ: Mapping[str, str], **kwargs: Any
    ) -> Self:
        raise NotImplementedError

    def build_request(self, batch: Sequence[Message]) -> httpx.Request:
        return self.new_request(
            "POST",
            "https://api.example.com/send",
            json={"to": [m.recipient for m in batch]},
            headers={"Authorization": f"Bearer {KEY}"},
        )

    def parse_success(self, response: httpx.Response, batch: Sequence[Message]) -> list[Result]:
        ids = json_body(response)["ids"]
        return [sent(m, i) for m, i in zip(batch, ids, strict=False)]


def echo(request: httpx.Request) -> httpx.Response:
    to = json.loads(request.content)["to"]
    return httpx.Response(200, json={"ids": [f"id-{t}" for t in to]})


def sender_for(respond: Any) -> tuple[EchoSender, Recorder]:
    recorder = Recorder(respond)
    return EchoSender(client=recorder.client(), secrets=(KEY,), secret_env="ECHO_KEY"), recorder


@pytest.fixture
def clock() -> Iterator[FixedClock]:
    fixed = FixedClock(datetime(2024, 1, 1, 8, 0, tzinfo=UTC))
    set_clock(fixed)
    yield fixed
    set_clock(None)


def test_splits_into_requests_of_max_batch_and_keeps_order() -> None:
    sender, recorder = sender_for(echo)
    messages = make_messages(7)
    results = sender.send(messages)
    assert [len(json.loads(r.content)["to"]) for r in recorder.requests] == [3, 3, 1]
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert [r.provider_id for r in results] == [f"id-{m.recipient}" for m in messages]
    assert all(r.outcome is Outcome.SENT for r in results)


def test_empty_input_sends_nothing() -> None:
    sender, recorder = sender_for(echo)
    assert sender.send([]) == []
    assert recorder.requests == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_throttling_and_server_errors_are_transient_for_the_whole_request(status: int) -> None:
    sender, _ = sender_for(lambda r: httpx.Response(status, json={"message": "try later"}))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert results[0].error == f"echo: HTTP {status}: try later"


def test_stops_after_a_wholly_transient_request_and_marks_the_rest_not_attempted() -> None:
    sender, recorder = sender_for(
        lambda r: httpx.Response(429, headers={"Retry-After": "12"}, json={"message": "slow down"})
    )
    results = sender.send(make_messages(7))
    assert len(recorder.requests) == 1
    assert len(results) == 7
    assert all(r.outcome is Outcome.TRANSIENT and r.retry_after == 12.0 for r in results)
    assert results[3].error == "not attempted: echo: HTTP 429: slow down"


def test_retry_after_seconds_and_http_date(clock: FixedClock) -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("Mon, 01 Jan 2024 08:02:00 GMT") == 120.0
    assert parse_retry_after("Sun, 31 Dec 2023 08:00:00 GMT") == 0.0  # already past
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after(None) is None


def test_http_date_retry_after_reaches_the_result(clock: FixedClock) -> None:
    sender, _ = sender_for(
        lambda r: httpx.Response(
            503, headers={"Retry-After": "Mon, 01 Jan 2024 08:00:30 GMT"}, text="<html>down</html>"
        )
    )
    (result,) = sender.send([make_message(0)])
    assert result.retry_after == 30.0
    assert result.error == "echo: HTTP 503: <html>down</html>"


def test_timeouts_and_connection_errors_are_transient() -> None:
    sender, _ = sender_for(raise_(httpx.ReadTimeout("read timed out")))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert results[0].error == "echo: timed out (ReadTimeout)"
    sender, _ = sender_for(raise_(httpx.ConnectError("connection refused")))
    (result,) = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT
    assert "ConnectError" in result.error and "connection refused" in result.error


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"ids": ', b'{"nothing": 1}'])
def test_an_unreadable_2xx_answer_is_transient(body: bytes) -> None:
    sender, _ = sender_for(lambda r: httpx.Response(200, content=body))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert results[0].error.startswith("echo: unreadable HTTP 200 answer")


def test_a_2xx_answer_with_too_few_results_is_transient() -> None:
    sender, _ = sender_for(lambda r: httpx.Response(200, json={"ids": ["only-one"]}))
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.TRANSIENT] * 2
    assert "does not match" in results[0].error


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_without_leaking_the_key(status: int) -> None:
    # A provider that echoes the key back must not get it into our error text.
    sender, _ = sender_for(lambda r: httpx.Response(status, json={"message": f"invalid key {KEY}"}))
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    text = "\n".join(info.value.lines())
    assert KEY not in text
    assert "***" in text and f"HTTP {status}" in text
    assert "$ECHO_KEY" in (info.value.hint or "")


def test_other_4xx_are_permanent_per_message_with_the_providers_words() -> None:
    sender, _ = sender_for(
        lambda r: httpx.Response(
            400, json={"errors": [{"message": "bad from"}, {"message": "bad subject"}]}
        )
    )
    results = sender.send(make_messages(2))
    assert [r.outcome for r in results] == [Outcome.PERMANENT] * 2
    assert results[1].error == "echo: HTTP 400: bad from; bad subject"
    assert not results[0].hard_bounce


@pytest.mark.parametrize("status", [301, 404, 405])
def test_a_wrong_url_raises_instead_of_failing_every_recipient(status: int) -> None:
    sender, _ = sender_for(
        lambda r: httpx.Response(
            status, headers={"Location": "https://elsewhere.example.com/"}, text="Not Found"
        )
    )
    with pytest.raises(PermanentSendError) as info:
        sender.send(make_messages(2))
    assert f"unexpected HTTP {status} from https://api.example.com/send" in str(info.value)
    assert "base_url" in (info.value.hint or "")


def test_a_fatal_error_after_accepted_requests_keeps_their_results() -> None:
    def first_ok_then_revoked(request: httpx.Request) -> httpx.Response:
        if len(recorder.requests) == 1:
            return echo(request)
        return httpx.Response(401, json={"message": "revoked"})

    sender, recorder = sender_for(first_ok_then_revoked)
    results = sender.send(make_messages(5))
    assert [r.outcome for r in results] == [Outcome.SENT] * 3 + [Outcome.TRANSIENT] * 2
    assert "HTTP 401" in results[4].error
    # The next call stops the run, before anything else goes out.
    with pytest.raises(PermanentSendError):
        sender.send(make_messages(1))


def test_concurrent_sends_from_several_threads_get_their_own_results() -> None:
    sender, recorder = sender_for(echo)
    batches = [[make_message(i * 10 + j) for j in range(3)] for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(sender.send, batches))
    for batch, results in zip(batches, outcomes, strict=True):
        assert [r.provider_id for r in results] == [f"id-{m.recipient}" for m in batch]
    assert len(recorder.requests) == 16


def test_owned_client_is_closed_and_injected_client_is_left_open() -> None:
    owned = EchoSender()
    owned.close()
    assert owned._client.is_closed
    recorder = Recorder(echo)
    client = recorder.client()
    with EchoSender(client=client):
        pass
    assert not client.is_closed


def test_requests_carry_the_client_timeouts_and_our_user_agent() -> None:
    # A bare httpx.Request sent with Client.send would carry no timeout at all.
    recorder = Recorder(echo)
    client = httpx.Client(transport=httpx.MockTransport(recorder), timeout=7.0)
    EchoSender(client=client).send([make_message(0)])
    (request,) = recorder.requests
    assert request.extensions["timeout"]["read"] == 7.0
    assert request.headers["User-Agent"] == USER_AGENT


def test_default_client_has_timeouts_and_a_user_agent() -> None:
    with make_client(12.0) as client:
        assert client.timeout.read == 12.0
        assert client.timeout.connect == 10.0
        assert client.headers["User-Agent"] == USER_AGENT


def test_address_helpers() -> None:
    assert display_address("", "a@x.org") == "a@x.org"
    assert display_address("Ada Lovelace", "a@x.org") == "Ada Lovelace <a@x.org>"
    assert display_address("Lovelace, Ada", "a@x.org") == '"Lovelace, Ada" <a@x.org>'
    assert display_address('Ada "AL"', "a@x.org") == '"Ada \\"AL\\"" <a@x.org>'
    assert display_address("读者", "a@x.org") == "读者 <a@x.org>"
    assert unencoded("=?utf-8?b?6K+76ICF?= <a@x.org>") == "读者 <a@x.org>"
    assert split_address("ML 论文周报 <digest@papers.example.org>") == (
        "ML 论文周报",
        "digest@papers.example.org",
    )


def test_extra_headers_drop_reserved_ones_case_insensitively() -> None:
    msg = make_message(0, headers={"List-Id": "<x.example.org>", "subject": "no"})
    assert extra_headers(msg, ("Subject",)) == {"List-Id": "<x.example.org>"}


def test_option_reader_reports_every_problem_at_once() -> None:
    r = OptionReader(
        "echo",
        {
            "_root": "/tmp",
            "tokn_env": "X",
            "timeout": -1,
            "base_url": "http://api.example.com",
            "stream": 3,
        },
        {},
        ("token_env", "base_url", "stream"),
    )
    assert r.secret("token_env", "ECHO_TOKEN") == ""
    assert r.string("stream", "s") == "s"
    assert r.url("base_url", "https://default") == "https://default"
    assert r.number("timeout", 30.0) == 30.0
    with pytest.raises(ConfigError) as info:
        r.finish()
    lines = "\n".join(info.value.lines())
    for expected in (
        "tokn_env: unknown key",
        "ECHO_TOKEN is not set",
        "stream: must be a string",
        "base_url: must be an https:// URL",
        "timeout: must be a number",
    ):
        assert expected in lines
    assert "_root" not in lines
    assert info.value.hint and "export ECHO_TOKEN" in info.value.hint


def test_option_reader_allows_plain_http_to_localhost_only() -> None:
    r = OptionReader("echo", {"base_url": "http://127.0.0.1:8025/"}, {}, ("base_url",))
    assert r.url("base_url", "https://d") == "http://127.0.0.1:8025"
    r.finish()
