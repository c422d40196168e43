"""CSRF on the subscribe form: signed double submit, cookie attributes, cross-site posts."""

from __future__ import annotations

from newsletter.serve.security import CSRF_COOKIE, Csrf
from newsletter.state import subscribers
from tests.serve.conftest import SECRET, MakeService, Service


def set_cookie_header(service: Service) -> str:
    return service.client.get("/subscribe").headers["set-cookie"]


def test_cookie_is_httponly_lax_and_secure_over_https(service: Service):
    header = set_cookie_header(service)
    assert header.startswith(f"{CSRF_COOKIE}=")
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "secure" in lowered
    assert "path=/" in lowered


def test_cookie_is_not_secure_over_plain_http(make_service: MakeService):
    service = make_service()
    service.client.base_url = "http://127.0.0.1:8080"  # type: ignore[assignment]
    assert "secure" not in set_cookie_header(service).lower()


def test_a_trusted_proxy_saying_https_makes_the_cookie_secure(make_service: MakeService):
    from newsletter.serve.settings import ServeSettings, parse_proxies

    service = make_service(
        ServeSettings(trusted_proxies=parse_proxies(["127.0.0.1"])), client=("127.0.0.1", 5000)
    )
    service.client.base_url = "http://127.0.0.1:8080"  # type: ignore[assignment]
    service.client.headers["X-Forwarded-Proto"] = "https"
    assert "secure" in set_cookie_header(service).lower()


def test_post_without_the_cookie_is_refused(service: Service):
    token = service.csrf()
    service.client.cookies.clear()
    page = service.client.post("/subscribe", data={"csrf_token": token, "email": "ada@example.org"})
    assert page.status_code == 403 and "Reload the subscribe page" in page.text
    assert subscribers.get(service.db, "ada@example.org") is None
    assert service.sender.sent == []


def test_post_without_the_token_or_with_a_wrong_one_is_refused(service: Service):
    service.csrf()
    for data in (
        {"email": "ada@example.org"},
        {"email": "ada@example.org", "csrf_token": "x" * 43},
    ):
        assert service.client.post("/subscribe", data=data).status_code == 403
    assert subscribers.get(service.db, "ada@example.org") is None


def test_a_token_only_matches_its_own_cookie(make_service: MakeService):
    attacker, victim = make_service(), make_service()
    stolen_token = attacker.csrf()  # the attacker's own cookie/token pair
    victim.csrf()  # the victim has a different cookie
    page = victim.client.post(
        "/subscribe", data={"csrf_token": stolen_token, "email": "ada@example.org"}
    )
    assert page.status_code == 403


def test_a_planted_cookie_without_the_secret_is_useless(service: Service):
    # A sibling subdomain may set our cookie; without the secret it cannot sign it.
    service.client.cookies.set(CSRF_COOKIE, "A" * 43)
    forged = Csrf(b"another-secret-of-enough-length")._sign("A" * 43)
    page = service.client.post(
        "/subscribe", data={"csrf_token": forged, "email": "ada@example.org"}
    )
    assert page.status_code == 403
    genuine = Csrf(SECRET.encode())._sign("A" * 43)
    page = service.client.post(
        "/subscribe", data={"csrf_token": genuine, "email": "ada@example.org"}
    )
    assert page.status_code == 200  # the construction itself works with the right key


def test_the_cookie_is_kept_across_form_loads(service: Service):
    first = service.csrf()
    assert service.csrf() == first


def test_one_click_unsubscribe_needs_no_csrf(service: Service, signer):
    sub = subscribers.add(service.db, "ada@example.org")
    service.client.cookies.clear()
    token = signer.make("unsubscribe", sub.id, 1, sub.email)
    answer = service.client.post(
        f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
