"""AWS Signature Version 4 for header-signed requests, with only hashlib and hmac.

Follows https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html and is
checked against AWS's published test suite (tests/senders/test_sigv4.py). Scope: what the
SES v2 JSON API needs — any method, query string, headers and body, signed in the
``Authorization`` header. Not covered: query-string (presigned) signing, S3's unnormalised
paths and chunked uploads, and path normalisation of ``.``/``..`` segments.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True, slots=True)
class Credentials:
    """An access key pair, plus the session token of temporary (STS) credentials."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class Signature:
    """Everything computed while signing, so tests can compare each step with AWS's."""

    canonical_request: str
    string_to_sign: str
    signed_headers: str
    signature: str
    headers: dict[str, str]  # to add to the request: X-Amz-Date, Authorization, …

    @property
    def authorization(self) -> str:
        return self.headers["Authorization"]


def _encode(value: str, safe: str = "") -> str:
    # RFC 3986 unreserved characters stay; everything else is %XX with upper-case hex.
    return quote(value, safe="-_.~" + safe)


def canonical_query(query: str) -> str:
    """Parameters sorted by encoded name, then value; every name and value encoded."""
    pairs = []
    for part in query.split("&") if query else ():
        name, _, value = part.partition("=")
        pairs.append((_encode(unquote(name)), _encode(unquote(value))))
    return "&".join(f"{n}={v}" for n, v in sorted(pairs))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """(``name:value\\n`` lines, ``a;b;c`` signed-header list), names lower-cased and sorted."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        # Trim and collapse inner runs of spaces, as the canonical form requires.
        merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    names = sorted(merged)
    lines = "".join(f"{n}:{','.join(merged[n])}\n" for n in names)
    return lines, ";".join(names)


def canonical_request(
    method: str, path: str, query: str, headers: Mapping[str, str], payload_hash: str
) -> tuple[str, str]:
    """The canonical request and its signed-header list (task 1 of the spec)."""
    lines, signed = canonical_headers(headers)
    canonical_path = _encode(unquote(path) or "/", safe="/")
    creq = "\n".join(
        [method.upper(), canonical_path, canonical_query(query), lines, signed, payload_hash]
    )
    return creq, signed


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """HMAC chain: secret → date → region → service → "aws4_request"."""
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    credentials: Credentials,
    region: str,
    service: str,
    when: datetime,
) -> Signature:
    """Sign a request; ``headers`` are those to sign (Host is added from the URL if absent)."""
    parts = urlsplit(url)
    to_sign = dict(headers)
    lower = {k.lower(): v for k, v in to_sign.items()}
    added: dict[str, str] = {}
    # A caller-supplied X-Amz-Date wins, so the header sent and the date signed agree.
    amz_date = lower.get("x-amz-date") or when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    if "host" not in lower:
        to_sign["Host"] = parts.netloc
    if "x-amz-date" not in lower:
        added["X-Amz-Date"] = amz_date
    if credentials.session_token and "x-amz-security-token" not in lower:
        added["X-Amz-Security-Token"] = credentials.session_token
    to_sign.update(added)
    creq, signed = canonical_request(
        method, parts.path, parts.query, to_sign, hashlib.sha256(body).hexdigest()
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    sts = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = signing_key(credentials.secret_access_key, date, region, service)
    signature = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    added["Authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return Signature(creq, sts, signed, signature, added)
