"""The [serve] table (host, port, rate limits, trusted proxies), read from config.toml and env."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from newsletter.config import Config, _env_overrides
from newsletter.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PER = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
DEFAULT_HOST = "127.0.0.1"  # loopback: a reverse proxy in front decides what is public
DEFAULT_PORT = 8080


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per sliding ``window`` seconds."""

    count: int
    window: float


@dataclass(frozen=True)
class ServeSettings:
    """Everything `newsletter serve` needs beyond Config; every field has a safe default."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    ip_limit: Limit = Limit(30, 3600.0)  # POST /subscribe per client IP ([serve] rate_limit)
    address_limit: Limit = Limit(3, 86400.0)  # confirmation mails per address
    global_limit: Limit = Limit(500, 3600.0)  # confirmation mails in all, protects the sender
    trusted_proxies: tuple[IPNetwork, ...] = ()
    public_url: str = ""  # where this service is reachable; "" = derived from the config

    def service_url(self, config: Config) -> str:
        """The absolute URL prefix of this service, ending in "/" (confirmation links)."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        prefix = config.unsubscribe_prefix
        if prefix.endswith("/unsubscribe/"):  # the service answers unsubscribe links: same host
            return prefix.removesuffix("unsubscribe/")
        return config.base_url


def parse_limit(value: Any, key: str) -> Limit:
    """ "10/h" → Limit(10, 3600); ConfigError naming ``key`` otherwise."""
    m = _LIMIT.match(value) if isinstance(value, str) else None
    if not m or int(m.group(1)) < 1:
        raise ConfigError(
            f'[serve] {key}: must be a limit such as "30/h" or "5/min"; got {value!r}'
        )
    return Limit(int(m.group(1)), float(_PER[m.group(2)]))


def parse_proxies(values: Iterable[Any], key: str = "trusted_proxies") -> tuple[IPNetwork, ...]:
    """Addresses or CIDR ranges ("127.0.0.1", "10.0.0.0/8") of proxies whose headers count."""
    nets: list[IPNetwork] = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ConfigError(
                f"[serve] {key}: {value!r} is not an IP address or network",
                hint='e.g. trusted_proxies = ["127.0.0.1", "::1"]',
            ) from None
    return tuple(nets)


def load_settings(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    trusted_proxies: Iterable[str] = (),
) -> ServeSettings:
    """[serve] from config.toml with NEWSLETTER_SERVE__* overrides; CLI flags win over both.

    Config keeps only the keys its validator knows, so the raw table is read here again.
    """
    try:
        data: dict[str, Any] = tomllib.loads(config.path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        data = {}  # load_config already read and validated this file; a race is not our job
    _env_overrides(data, os.environ if environ is None else environ)
    table = data.get("serve", {})
    table = table if isinstance(table, dict) else {}
    settings = ServeSettings()
    chosen_host = host or table.get("host", settings.host)
    chosen_port = port or table.get("port", settings.port)
    if not isinstance(chosen_host, str) or not chosen_host:
        raise ConfigError("[serve] host: must be a host name or address")
    if (
        isinstance(chosen_port, bool)
        or not isinstance(chosen_port, int)
        or not 0 <= chosen_port < 65536
    ):
        raise ConfigError("[serve] port: must be a whole number between 0 and 65535")
    proxies = table.get("trusted_proxies", [])
    if isinstance(proxies, str):
        proxies = [p for p in proxies.split(",") if p.strip()]
    if not isinstance(proxies, list):
        raise ConfigError("[serve] trusted_proxies: must be a list of addresses")
    public_url = table.get("public_url", "")
    if not isinstance(public_url, str) or (
        public_url and not re.match(r"^https?://[^/\s]+", public_url)
    ):
        raise ConfigError("[serve] public_url: must be an absolute http(s) URL")
    return ServeSettings(
        host=chosen_host,
        port=chosen_port,
        ip_limit=parse_limit(table["rate_limit"], "rate_limit")
        if "rate_limit" in table
        else settings.ip_limit,
        address_limit=parse_limit(table["address_limit"], "address_limit")
        if "address_limit" in table
        else settings.address_limit,
        trusted_proxies=parse_proxies([*proxies, *trusted_proxies]),
        public_url=public_url,
    )
