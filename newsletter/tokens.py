"""HMAC-signed, fixed-width tokens for unsubscribe and confirmation links (constant-time checks)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from newsletter.errors import ConfigError

_VERSION = 1
_LAYOUT = struct.Struct(">BBQI")  # version, purpose, subscriber id, stamp (edition or minutes)
_MAC_BYTES = 16
TOKEN_LENGTH = 40  # base64url of 14 + 16 bytes: fixed, so per-recipient splicing stays cheap
PURPOSES = {"unsubscribe": 1, "confirm": 2}
MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class TokenData:
    purpose: str
    subscriber_id: int
    stamp: int  # edition number (unsubscribe) or minutes since the epoch (confirm)


def load_secret(env_name: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The signing key, from the environment only (never config.toml, never logged)."""
    value = (os.environ if environ is None else environ).get(env_name, "")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"environment variable {env_name} is {'too short' if value else 'not set'}: "
            f"unsubscribe links need a secret of at least {MIN_SECRET_BYTES} bytes",
            hint=f'export {env_name}="$(python -c '
            f'"import secrets; print(secrets.token_urlsafe(32))")"',
        )
    return value.encode()


class Signer:
    """Makes and checks tokens bound to (purpose, subscriber id, stamp, address)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"newsletter-token-v1\0" + secret).digest()

    def _mac(self, payload: bytes, email_key: str) -> bytes:
        msg = payload + b"\0" + email_key.strip().lower().encode("utf-8")
        return hmac.digest(self._key, msg, "sha256")[:_MAC_BYTES]  # one-shot: no HMAC object

    def make(self, purpose: str, subscriber_id: int, stamp: int, email: str) -> str:
        payload = _LAYOUT.pack(_VERSION, PURPOSES[purpose], subscriber_id, stamp)
        raw = payload + self._mac(payload, email)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @staticmethod
    def peek(token: str) -> TokenData | None:
        """Decode without verifying (to find the subscriber whose address completes the MAC)."""
        if len(token) != TOKEN_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _LAYOUT.size + _MAC_BYTES:
            return None
        version, purpose, sub_id, stamp = _LAYOUT.unpack(raw[: _LAYOUT.size])
        names = {v: k for k, v in PURPOSES.items()}
        if version != _VERSION or purpose not in names:
            return None
        return TokenData(names[purpose], sub_id, stamp)

    def verify(self, token: str, purpose: str, email: str) -> TokenData | None:
        """The token's data if it is genuine, for this purpose and this address; else None."""
        data = self.peek(token)
        if data is None or data.purpose != purpose:
            return None
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        expected = self._mac(raw[: _LAYOUT.size], email)
        return data if hmac.compare_digest(expected, raw[_LAYOUT.size :]) else None
