"""The public pages: subscribe form (CSRF, rate limits), confirmation link, unsubscribe."""

from __future__ import annotations

import logging
import secrets
from email.utils import parseaddr
from urllib.parse import parse_qs

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from newsletter.errors import NewsletterError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.senders.base import SimpleMessage
from newsletter.serve import subscription
from newsletter.serve.security import CSRF_FIELD, BodyTooLarge, client_ip, is_https, read_body
from newsletter.serve.services import Services
from newsletter.state.addresses import SubscriberError, address_key, check_address

log = logging.getLogger("newsletter.serve")
FORM_LIMIT = 8 * 1024  # an address, a name and a token: anything bigger is not our form
UNSUBSCRIBE_LIMIT = 64 * 1024  # RFC 8058 bodies are tiny; some senders post multipart


class Forms:
    """Route handlers over one Services instance."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self.t = services.pages.t

    def routes(self) -> list[Route]:
        return [
            Route("/subscribe", self.subscribe_page, methods=["GET"]),
            Route("/subscribe", self.subscribe, methods=["POST"]),
            Route("/confirm/{token}", self.confirm, methods=["GET"]),
            Route("/unsubscribe/{token}", self.unsubscribe_page, methods=["GET"]),
            Route("/unsubscribe/{token}", self.unsubscribe, methods=["POST"]),
        ]

    # subscribe -------------------------------------------------------------------------------
    def _form(
        self,
        request: Request,
        status: int = 200,
        *,
        error: str = "",
        email: str = "",
        name: str = "",
    ) -> HTMLResponse:
        cookie, token = self.s.csrf.issue(request)
        response = self.s.pages.page(
            "subscribe.html.j2", status, csrf_token=token, error=error, email=email, name=name
        )
        self.s.csrf.set_cookie(
            response, cookie, secure=is_https(request, self.s.settings.trusted_proxies)
        )
        return response

    async def subscribe_page(self, request: Request) -> Response:
        return self._form(request)

    async def subscribe(self, request: Request) -> Response:
        t = self.t
        try:
            fields = _parse_form(await read_body(request, FORM_LIMIT))
        except BodyTooLarge:
            return self.s.pages.message(t("too_large_title"), "", 413)
        if not self.s.csrf.check(request, fields.get(CSRF_FIELD, "")):
            return self.s.pages.message(
                t("form_expired_title"),
                t("form_expired_text"),
                403,
                link="/subscribe",
                link_text=t("subscribe_button"),
            )
        wait = self.s.limits.per_ip.hit(client_ip(request, self.s.settings.trusted_proxies))
        if wait:
            return self.s.pages.message(
                t("rate_limited_title"),
                t("rate_limited_text"),
                429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        email, name = fields.get("email", "").strip(), fields.get("name", "").strip()
        try:
            shown = check_address(email).email
        except SubscriberError as exc:
            return self._form(
                request, 400, error=t("invalid_email", error=_why(exc)), email=email, name=name
            )
        thanks = self.s.pages.message(t("check_inbox_title"), t("check_inbox_text", email=shown))
        if fields.get("website"):  # the hidden honeypot field: only bots fill it in
            log.info("subscribe: honeypot filled in, ignored")
            return thanks
        try:
            decision, sub = await run_in_threadpool(subscription.request, self.s.db, email, name)
        except SubscriberError as exc:  # e.g. a control character in the name
            return self._form(
                request, 400, error=t("invalid_email", error=_why(exc)), email=email, name=name
            )
        if decision is not subscription.Request.SEND or sub is None:
            log.info("subscribe: no mail (%s)", decision.value)  # same page: reveals nothing
            return thanks
        if self.s.limits.per_address.hit(address_key(email)) or self.s.limits.overall.hit(
            "confirmations"
        ):
            log.warning("subscribe: confirmation limit reached, no mail sent")
            return thanks
        # Sent after the response, so an existing and a new address take the same time.
        thanks.background = BackgroundTask(self.send_confirmation, sub)
        return thanks

    def send_confirmation(self, sub: Subscriber) -> None:
        """Mail the double opt-in link (runs in a worker thread after the response)."""
        t, config = self.t, self.s.config
        token = subscription.confirm_token(self.s.signer, sub)
        context = {"email": sub.email, "link": f"{self.s.service_url}confirm/{token}"}
        domain = parseaddr(config.from_header)[1].rpartition("@")[2] or "localhost"
        message = SimpleMessage(
            recipient=sub.email,
            name=sub.name,
            subject=t("confirm_subject", title=config.newsletter.title),
            from_header=config.from_header,
            reply_to=config.email.reply_to,
            html=self.s.pages.render_text("confirm_email.html.j2", **context),
            text=self.s.pages.render_text("confirm_email.txt.j2", **context),
            message_id=f"<confirm.{secrets.token_hex(12)}@{domain}>",
            headers={"Auto-Submitted": "auto-generated"},
        )
        try:
            result = self.s.sender.send([message])[0]
        except (NewsletterError, OSError) as exc:
            log.error("confirmation mail to subscriber %d not sent: %s", sub.id, exc)
            return
        if not result.ok:
            log.error(
                "confirmation mail to subscriber %d not sent: %s %s",
                sub.id,
                result.outcome.value,
                result.error,
            )

    # confirm ---------------------------------------------------------------------------------
    async def confirm(self, request: Request) -> Response:
        t, title = self.t, self.s.config.newsletter.title
        outcome, found = await run_in_threadpool(
            subscription.confirm, self.s.db, self.s.signer, request.path_params["token"]
        )
        if outcome is subscription.Confirm.CONFIRMED and found is not None:
            log.info("confirmed subscriber %d", found.id)
            return self.s.pages.message(
                t("confirmed_title"), t("confirmed_text", email=found.email, title=title)
            )
        if outcome is subscription.Confirm.ALREADY and found is not None:
            return self.s.pages.message(
                t("confirmed_title"), t("already_confirmed_text", email=found.email, title=title)
            )
        if outcome is subscription.Confirm.EXPIRED:
            return self.s.pages.message(
                t("link_expired_title"),
                t("link_expired_text"),
                410,
                link="/subscribe",
                link_text=t("subscribe_button"),
            )
        return self._invalid_link()

    def _invalid_link(self) -> HTMLResponse:
        t = self.t
        return self.s.pages.message(
            t("link_invalid_title"),
            t("link_invalid_text"),
            400,
            link="/subscribe",
            link_text=t("subscribe_button"),
        )

    # unsubscribe -----------------------------------------------------------------------------
    async def unsubscribe_page(self, request: Request) -> Response:
        """A page with a button: GET never unsubscribes, since scanners follow links."""
        found = await run_in_threadpool(
            subscription.find, self.s.db, self.s.signer, request.path_params["token"], "unsubscribe"
        )
        if found is None:
            return self._invalid_link()
        if found.status is SubscriberStatus.UNSUBSCRIBED:
            return self._unsubscribed(found.email)
        return self.s.pages.page(
            "unsubscribe.html.j2",
            email=found.email,
            action=f"/unsubscribe/{request.path_params['token']}",
        )

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click: the token is the authorisation, so no CSRF check and no page
        to confirm; the body (List-Unsubscribe=One-Click) is read but not required."""
        try:
            await read_body(request, UNSUBSCRIBE_LIMIT)
        except BodyTooLarge:
            return self.s.pages.message(self.t("too_large_title"), "", 413)
        token = request.path_params["token"]
        found = await run_in_threadpool(
            subscription.find, self.s.db, self.s.signer, token, "unsubscribe"
        )
        if found is None:
            return self._invalid_link()
        if await run_in_threadpool(subscription.unsubscribe, self.s.db, found.email, "one-click"):
            log.info("unsubscribed subscriber %d (one-click)", found.id)
        return self._unsubscribed(found.email)

    def _unsubscribed(self, email: str) -> HTMLResponse:
        t = self.t
        return self.s.pages.message(
            t("unsubscribed_title"),
            t("unsubscribed_text", email=email, title=self.s.config.newsletter.title),
            link="/subscribe",
            link_text=t("resubscribe"),
        )


def _parse_form(body: bytes) -> dict[str, str]:
    """application/x-www-form-urlencoded → first value per field (bad UTF-8: empty form)."""
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {key: values[0] for key, values in pairs.items() if values}


def _why(exc: SubscriberError) -> str:
    """The validator's reason without repeating the (already shown) input."""
    return exc.message.rpartition(": ")[2] if ": " in exc.message else exc.message
