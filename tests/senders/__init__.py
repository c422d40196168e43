"""Sender tests; shared builders for the HTTP provider tests (messages, a recording transport)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

from newsletter.senders.base import SimpleMessage

FROM = "ML 论文周报 <digest@papers.example.org>"
DATE = "Mon, 01 Jan 2024 08:00:00 +0000"


def unsubscribe_headers(token: str) -> dict[str, str]:
    """The per-recipient headers every provider must pass through untouched."""
    return {
        "List-Unsubscribe": f"<https://x/unsubscribe/{token}>, <mailto:u@x?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def make_message(i: int, **changes: Any) -> SimpleMessage:
    """Message ``i``: its own address, Message-ID, unsubscribe token and body."""
    fields: dict[str, Any] = {
        "recipient": f"reader{i}@example.org",
        "subject": "ML 论文周报 第7期",
        "from_header": FROM,
        "html": f'<p>Hello {i}</p><a href="https://x/unsubscribe/TOKEN{i}">unsubscribe</a>',
        "text": f"Hello {i}\n\nUnsubscribe: https://x/unsubscribe/TOKEN{i}\n",
        "message_id": f"<7.{i}@papers.example.org>",
        "name": f"Reader {i}",
        "reply_to": "editors@papers.example.org",
        "edition": 7,
        "headers": unsubscribe_headers(f"TOKEN{i}"),
        "date": DATE,
    }
    fields.update(changes)
    return SimpleMessage(**fields)


def make_messages(count: int) -> list[SimpleMessage]:
    return [make_message(i) for i in range(count)]


def token_of(list_unsubscribe: str) -> str:
    """``TOKEN3`` from ``<https://x/unsubscribe/TOKEN3>, <mailto:…>``."""
    return list_unsubscribe.split("/unsubscribe/", 1)[1].split(">", 1)[0]


class Recorder:
    """A MockTransport handler that keeps every request and answers with ``respond``."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response]) -> None:
        self.respond = respond
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        return self.respond(request)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def json_of(request: httpx.Request) -> Any:
    assert request.headers["Content-Type"].startswith("application/json")
    return json.loads(request.content)


def raise_(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    """A responder that fails the way a dead network does."""

    def respond(request: httpx.Request) -> httpx.Response:
        raise exc

    return respond
