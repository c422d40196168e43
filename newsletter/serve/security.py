"""Request hygiene for the service: CSRF double-submit tokens, sliding-window limits, client IPs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response

from newsletter.serve.settings import IPNetwork, Limit

CSRF_COOKIE = "newsletter_csrf"
CSRF_FIELD = "csrf_token"
_COOKIE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class BodyTooLarge(Exception):
    """The request body is over the route's limit (answered 413)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without buffering the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


class Csrf:
    """Signed double submit: the form carries HMAC(secret, cookie), the cookie a random value.

    A cross-site page can make the browser send the cookie but cannot read it, so it cannot
    compute the matching form field; the HMAC means a cookie planted by a sibling subdomain
    is useless without the secret too.
    """

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"newsletter-csrf-v1\0" + secret).digest()

    def _sign(self, cookie: str) -> str:
        mac = hmac.new(self._key, cookie.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def issue(self, request: Request) -> tuple[str, str]:
        """(cookie value, form token): the visitor's cookie is reused while it looks right."""
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not (32 <= len(cookie) <= 64 and set(cookie) <= _COOKIE_CHARS):
            cookie = secrets.token_urlsafe(32)
        return cookie, self._sign(cookie)

    def check(self, request: Request, submitted: str) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not submitted or not cookie.isascii():
            return False
        return hmac.compare_digest(self._sign(cookie).encode(), submitted.encode("utf-8"))

    @staticmethod
    def set_cookie(response: Response, cookie: str, *, secure: bool) -> None:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            max_age=86400,
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )


class SlidingWindow:
    """At most ``limit.count`` hits per key within any ``limit.window`` seconds, in memory.

    Memory is bounded: beyond ``max_keys`` the least recently used keys are forgotten, which
    can only make the limit more lenient for someone, never stricter.
    """

    def __init__(
        self, limit: Limit, *, max_keys: int = 50_000, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._now = now
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float:
        """Record a hit and return 0, or refuse it and return seconds until one is allowed."""
        now = self._now()
        with self._lock:
            hits = self._hits.pop(key, None) or deque()
            while hits and hits[0] <= now - self.limit.window:
                hits.popleft()
            if len(hits) >= self.limit.count:
                self._hits[key] = hits
                return max(hits[0] + self.limit.window - now, 0.001)
            hits.append(now)
            self._hits[key] = hits
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            return 0.0


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(value: str, proxies: Sequence[IPNetwork]) -> bool:
    ip = _ip(value)
    return ip is not None and any(ip in net for net in proxies)


def client_ip(request: Request, proxies: Sequence[IPNetwork]) -> str:
    """The client address; X-Forwarded-For counts only when the peer is a trusted proxy.

    The header is read from the right: each trusted proxy appends the address it saw, so the
    first address not itself a trusted proxy is the real client (the left part is whatever
    the client chose to send).
    """
    peer = request.client.host if request.client else ""
    if not proxies or not _trusted(peer, proxies):
        return peer or "unknown"
    chain = [p.strip() for p in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([p for p in chain if p]):
        if not _trusted(hop, proxies):
            return hop if _ip(hop) is not None else peer
    return peer


def is_https(request: Request, proxies: Sequence[IPNetwork]) -> bool:
    """Whether the visitor used https (a trusted proxy's X-Forwarded-Proto counts)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client else ""
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return bool(proxies) and _trusted(peer, proxies) and proto == "https"


class ReplayCache:
    """Ids of webhook deliveries already accepted, so a captured request is not replayed.

    Bounded (oldest forgotten first) and per process: every effect a webhook has is
    idempotent anyway, so this narrows replays rather than being the only defence.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def seen(self, key: str) -> bool:
        with self._lock:
            return key in self._ids

    def add(self, key: str) -> None:
        with self._lock:
            self._ids[key] = None
            self._ids.move_to_end(key)
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)
