"""What every route of the service shares: config, database, signer, sender, limits, pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from newsletter.config import Config
from newsletter.senders.base import Sender
from newsletter.serve.pages import Pages
from newsletter.serve.security import Csrf, ReplayCache, SlidingWindow
from newsletter.serve.settings import ServeSettings
from newsletter.state.db import Database
from newsletter.tokens import Signer


@dataclass
class Limits:
    """The in-memory sliding windows (reset on restart; documented in docs/serve.md)."""

    per_ip: SlidingWindow
    per_address: SlidingWindow
    overall: SlidingWindow

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> Limits:
        return cls(
            SlidingWindow(settings.ip_limit),
            SlidingWindow(settings.address_limit),
            SlidingWindow(settings.global_limit),
        )


@dataclass
class Services:
    """One instance per app; ``db`` is opened by the app's lifespan and closed with it."""

    config: Config
    settings: ServeSettings
    signer: Signer
    csrf: Csrf
    pages: Pages
    sender: Sender
    http: httpx.Client
    environ: Mapping[str, str]
    limits: Limits
    db_: Database | None = None
    replays: ReplayCache = field(default_factory=ReplayCache)  # webhook delivery ids

    @property
    def db(self) -> Database:
        if self.db_ is None:
            raise RuntimeError(
                "the state database is opened by the app's lifespan: "
                "run the app under uvicorn or `with TestClient(app)`"
            )
        return self.db_

    @property
    def service_url(self) -> str:
        return self.settings.service_url(self.config)
