"""Amazon SNS message verification: canonical string, RSA signature, trusted certificate URLs."""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.serve.webhooks import WebhookError, text

# Only SNS itself may name the certificate (or the subscribe URL): anything else would let a
# forger sign with their own key, or make us fetch an address of their choosing.
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
CertLoader = Callable[[str], bytes]


def is_sns_url(url: str, *, pem: bool = False) -> bool:
    """An https URL on an sns.<region>.amazonaws.com host (no user info, no odd port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and not parts.username
        and port in (None, 443)
        and bool(_SNS_HOST.match(parts.hostname or ""))
        and (not pem or parts.path.endswith(".pem"))
    )


def canonical(message: Mapping[str, Any]) -> bytes:
    """The string SNS signs: "Name\\nvalue\\n" for the type's fields, sorted, when present."""
    names = _FIELDS.get(text(message.get("Type")))
    if names is None:
        raise WebhookError(400, "unknown SNS message type")
    out = []
    for name in names:
        value = message.get(name)
        if value is None and name == "Subject":  # optional: left out entirely when absent
            continue
        if not isinstance(value, str):
            raise WebhookError(400, f"SNS message without {name}")
        out.append(f"{name}\n{value}\n")
    return "".join(out).encode("utf-8")


class Verifier:
    """Checks SNS signatures, fetching each signing certificate once through ``load``."""

    def __init__(self, load: CertLoader) -> None:
        self._load = load
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def key(self, url: str) -> rsa.RSAPublicKey:
        with self._lock:
            cached = self._keys.get(url)
        if cached is not None:
            return cached
        try:
            cert = x509.load_pem_x509_certificate(self._load(url))
        except (httpx.HTTPError, ValueError) as exc:
            raise WebhookError(502, f"cannot load the SNS signing certificate: {exc}") from exc
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookError(403, "the SNS signing certificate has no RSA key")
        with self._lock:
            self._keys[url] = key
        return key

    def verify(self, message: Mapping[str, Any]) -> None:
        """Raise WebhookError unless ``message`` carries a genuine SNS signature."""
        url = text(message.get("SigningCertURL"))
        if not is_sns_url(url, pem=True):
            raise WebhookError(403, "SigningCertURL is not an Amazon SNS certificate URL")
        algorithm = _HASHES.get(text(message.get("SignatureVersion")))
        if algorithm is None:
            raise WebhookError(403, "unsupported SNS SignatureVersion")
        try:
            signature = base64.b64decode(text(message.get("Signature")), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookError(403, "bad signature") from None
        data = canonical(message)
        try:
            self.key(url).verify(signature, data, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise WebhookError(403, "bad signature") from None


def http_loader(client: httpx.Client) -> CertLoader:
    """Fetch certificates with ``client`` (tests pass one built on httpx.MockTransport)."""

    def load(url: str) -> bytes:
        response = client.get(url, follow_redirects=False, timeout=10.0)
        response.raise_for_status()
        return response.content

    return load
