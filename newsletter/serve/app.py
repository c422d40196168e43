"""The ASGI app of `newsletter serve`: archive, feeds, subscribe/confirm/unsubscribe, webhooks."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from newsletter.config import Config
from newsletter.errors import NewsletterError
from newsletter.senders import create_sender
from newsletter.senders.base import Sender
from newsletter.serve.forms import Forms
from newsletter.serve.pages import Pages
from newsletter.serve.security import Csrf, client_ip
from newsletter.serve.services import Limits, Services
from newsletter.serve.settings import IPNetwork, ServeSettings, load_settings
from newsletter.serve.static import SiteFiles
from newsletter.serve.webhooks import Webhooks
from newsletter.state.db import Database, open_database
from newsletter.tokens import Signer, load_secret

log = logging.getLogger("newsletter.serve")
access_log = logging.getLogger("newsletter.serve.access")
_TOKEN_PATH = re.compile(r"^/(confirm|unsubscribe)/[^/]*")


def create_app(
    config: Config,
    *,
    sender: Sender | None = None,
    http_client: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
    settings: ServeSettings | None = None,
    build_site: bool = True,
) -> Starlette:
    """The service for ``config``; raises ConfigError at once for a missing secret or key.

    ``sender`` and ``http_client`` (SNS certificates, subscription confirmation) are
    injectable for tests; when given they stay open, otherwise the app closes its own.
    The state database is opened by the lifespan (uvicorn, or ``with TestClient(app)``).
    """
    env = os.environ if environ is None else environ
    settings = settings or load_settings(config, env)
    secret = load_secret(config.email.secret_env, env)
    webhooks = Webhooks.from_env(env)  # before anything that needs closing: may raise
    services = Services(
        config=config,
        settings=settings,
        signer=Signer(secret),
        csrf=Csrf(secret),
        pages=Pages(config),
        sender=sender or create_sender(config, environ=env),
        http=http_client or httpx.Client(timeout=10.0, follow_redirects=False),
        environ=env,
        limits=Limits.from_settings(settings),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services.db_ = await run_in_threadpool(
            lambda: open_database(config.database_url, busy_timeout=config.state.busy_timeout)
        )
        if build_site and not (config.out_dir / "index.html").is_file():
            await run_in_threadpool(_build, config)
        log.info(
            "serving %s; webhooks: %s",
            config.out_dir,
            ", ".join(sorted(webhooks.handlers)) or "none configured",
        )
        try:
            yield
        finally:
            services.db.close()
            services.db_ = None
            if sender is None:
                services.sender.close()
            if http_client is None:
                services.http.close()

    async def healthz(request: Request) -> Response:
        ok = await run_in_threadpool(_database_ok, services.db)
        return JSONResponse(
            {"status": "ok" if ok else "error", "db": "ok" if ok else "error"},
            200 if ok else 503,
            headers={"Cache-Control": "no-store"},
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 500:
            log.error("%s %s failed", request.method, _redact(request.url.path), exc_info=exc)
        t = services.pages.t
        title = t("not_found_title") if status == 404 else t("error_title")
        return services.pages.message(
            title,
            "" if status == 404 else t("error_text"),
            status,
            headers=getattr(exc, "headers", None) or {},
        )

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        *Forms(services).routes(),
        *webhooks.routes(services),
        Mount("/", app=SiteFiles(config.out_dir)),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: http_error},
        middleware=[Middleware(AccessLog, proxies=settings.trusted_proxies)],
    )
    app.state.services = services
    return app


def _build(config: Config) -> None:
    """Build public/ once when it is missing; a broken site must not stop the subscription pages."""
    from newsletter.pipeline import build

    try:
        report = build(config)
        log.info("built %d editions into %s", report.editions, report.out)
    except NewsletterError as exc:
        log.error("could not build the site: %s", exc)


def _database_ok(db: Database) -> bool:
    try:
        with db.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any failure at all means "not healthy"
        log.error("health check: state database unavailable: %s", type(exc).__name__)
        return False
    return True


def _redact(path: str) -> str:
    """Tokens in paths are credentials: logs show that there was one, never which."""
    return _TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/…", path)


class AccessLog:
    """One line per request, with token paths redacted (uvicorn's own access log is off)."""

    def __init__(self, app: ASGIApp, proxies: tuple[IPNetwork, ...] = ()) -> None:
        self.app = app
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            access_log.info(
                "%s %s %s %d %.0f ms",
                client_ip(Request(scope), self.proxies),
                scope["method"],
                _redact(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
