"""Provider webhooks for bounces and complaints: verify as documented, then suppress addresses.

Each provider module exposes ``from_env(environ) -> Handler | None``: None when its secret
is not configured (the endpoint then answers 404), ConfigError when the secret is malformed.
"""

from __future__ import annotations

import enum
import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.models import SubscriberStatus
from newsletter.serve import subscription
from newsletter.serve.security import BodyTooLarge, read_body
from newsletter.serve.services import Services
from newsletter.state import subscribers
from newsletter.state.addresses import SubscriberError, check_address
from newsletter.state.db import Database

log = logging.getLogger("newsletter.serve.webhooks")
PROVIDERS = ("mailgun", "postmark", "resend", "sendgrid", "ses")
BODY_LIMIT = 8 * 1024 * 1024  # SendGrid batches many events per request


class Kind(enum.Enum):
    BOUNCE = "bounce"  # hard/permanent: the address does not work
    COMPLAINT = "complaint"  # marked as spam
    UNSUBSCRIBE = "unsubscribe"  # the provider's own unsubscribe link or suppression


@dataclass(frozen=True, slots=True)
class Event:
    email: str
    kind: Kind
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Batch:
    """What one verified request says; ``delivery_id`` identifies it for replay checks."""

    events: Sequence[Event] = ()
    delivery_id: str = ""
    ignored: int = 0  # soft bounces, opens, deliveries …: logged, never acted on


class WebhookError(Exception):
    """Refuse the request with ``status``; the message is safe to send back (no secrets)."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class Handler(Protocol):
    name: str

    def __call__(self, services: Services, headers: Headers, body: bytes) -> Batch:
        """Verify the request (raise WebhookError) and translate it into events."""
        ...


@dataclass
class Webhooks:
    """The configured handlers, by provider name, and the route that dispatches to them."""

    handlers: dict[str, Handler] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Webhooks:
        found: dict[str, Handler] = {}
        for name in PROVIDERS:
            module = importlib.import_module(f"newsletter.serve.webhooks.{name}")
            handler: Handler | None = module.from_env(environ)
            if handler is not None:
                found[name] = handler
        return cls(found)

    def routes(self, services: Services) -> list[Route]:
        async def endpoint(request: Request) -> Response:
            return await self.receive(services, request)

        return [Route("/webhooks/{provider}", endpoint, methods=["POST"])]

    async def receive(self, services: Services, request: Request) -> Response:
        name = request.path_params["provider"]
        handler = self.handlers.get(name)
        if handler is None:
            return JSONResponse({"error": "no such webhook is configured"}, 404)
        try:
            body = await read_body(request, BODY_LIMIT)
            batch = await run_in_threadpool(handler, services, request.headers, body)
        except BodyTooLarge:
            return JSONResponse({"error": "request body too large"}, 413)
        except WebhookError as exc:
            log.warning("%s webhook refused (%d): %s", name, exc.status, exc.message)
            return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)
        if batch.delivery_id and services.replays.seen(f"{name}:{batch.delivery_id}"):
            return JSONResponse({"ok": True, "duplicate": True})
        applied = await run_in_threadpool(apply_events, services.db, name, batch.events)
        if batch.delivery_id:  # only once applied: a failed attempt may be retried
            services.replays.add(f"{name}:{batch.delivery_id}")
        return JSONResponse(
            {"ok": True, "applied": applied, "ignored": batch.ignored + len(batch.events) - applied}
        )


def apply_events(db: Database, provider: str, events: Sequence[Event]) -> int:
    """Mark addresses bounced/complained/unsubscribed; return how many events changed state."""
    applied = 0
    for event in events:
        try:
            email = check_address(event.email).email
        except SubscriberError:
            log.warning("%s webhook: not an address: %r", provider, event.email[:100])
            continue
        detail = f"{provider}" + (f" {event.detail}" if event.detail else "")
        if event.kind is Kind.UNSUBSCRIBE:
            applied += subscription.unsubscribe(db, email, detail)
            continue
        status = (
            SubscriberStatus.COMPLAINED
            if event.kind is Kind.COMPLAINT
            else SubscriberStatus.BOUNCED
        )
        current = subscribers.get(db, email)
        if current is not None and current.status in (status, SubscriberStatus.COMPLAINED):
            continue  # already known; a complaint is the stronger fact and stays
        # Recorded even for addresses not on the list: a late bounce still suppresses.
        subscribers.set_status(db, email, status, reason=f"{status}: {detail}"[:300])
        log.info("%s webhook: %s is now %s", provider, email, status)
        applied += 1
    return applied


def json_body(body: bytes) -> Any:
    """The parsed JSON body; 400 if it is not JSON."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookError(400, "the body is not JSON") from None


def text(value: Any) -> str:
    """A string field of a payload (anything else: "")."""
    return value if isinstance(value, str) else ""
