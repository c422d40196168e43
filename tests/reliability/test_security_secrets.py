"""Security: tokens cannot be forged or misused; secrets stay secret; safe defaults."""

from __future__ import annotations

import base64
import hmac
import importlib.util
import inspect
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.config import Config
from newsletter.deliver.message import EditionMessage
from newsletter.state.db import Database
from newsletter.tokens import TOKEN_LENGTH, Signer
from tests.conftest import MakeProject
from tests.reliability import SECRET, assert_no_crash, run
from tests.reliability.security_support import (
    GOOD_ISSUE,
    WireSender,
    _send,
)
from tests.smtpd_fixture import PASSWORD, SMTPServer

# --- unsubscribe and confirmation tokens ----------------------------------------------------

KEY = b"token-test-secret-0123456789abcdef"
ADDRESS = "Ada@Example.org"


@pytest.fixture
def signer() -> Signer:
    return Signer(KEY)


def test_a_genuine_token_verifies_for_its_purpose_and_address_only(signer: Signer) -> None:
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    assert len(token) == TOKEN_LENGTH
    data = signer.verify(token, "unsubscribe", ADDRESS)
    assert data is not None and (data.subscriber_id, data.stamp) == (42, 7)
    assert signer.verify(token, "unsubscribe", " ada@example.ORG ") is not None  # same address
    assert signer.verify(token, "unsubscribe", "eve@example.org") is None  # replayed elsewhere
    assert signer.verify(token, "unsubscribe", "ada@example.org.evil") is None
    assert signer.verify(token, "confirm", ADDRESS) is None  # another purpose
    confirm = signer.make("confirm", 42, 7, ADDRESS)
    assert signer.verify(confirm, "confirm", ADDRESS) is not None
    assert signer.verify(confirm, "unsubscribe", ADDRESS) is None
    assert Signer(b"another-secret-0123456789abcdef").verify(token, "unsubscribe", ADDRESS) is None


def test_every_single_bit_flip_is_refused(signer: Signer) -> None:
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for i in range(len(raw)):
        for bit in range(8):
            forged = bytearray(raw)
            forged[i] ^= 1 << bit
            text = base64.urlsafe_b64encode(bytes(forged)).decode().rstrip("=")
            for purpose in ("unsubscribe", "confirm"):
                assert signer.verify(text, purpose, ADDRESS) is None, (i, bit, purpose)


def test_wrong_lengths_and_garbage_are_refused(signer: Signer) -> None:
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    for bad in (
        "",
        token[:-1],
        token + "A",
        token + "=",
        token[1:],
        "=" * 40,
        "é" * 40,
        token[:-2] + "==",
        token.replace(token[5], "+" if token[5] != "+" else "/"),
        token[:20] + "\x00" + token[21:],
        token * 2,
        " " + token[1:],
    ):
        for purpose in ("unsubscribe", "confirm"):
            assert signer.verify(bad, purpose, ADDRESS) is None, bad


@settings(max_examples=200, deadline=None, database=None)
@given(
    raw=st.binary(min_size=30, max_size=30),
    text=st.text(min_size=40, max_size=40),
    purpose=st.sampled_from(["unsubscribe", "confirm"]),
)
def test_random_tokens_are_refused(raw: bytes, text: str, purpose: str) -> None:
    signer = Signer(KEY)
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert signer.verify(forged, purpose, ADDRESS) is None
    assert signer.verify(text, purpose, ADDRESS) is None


def test_tokens_are_checked_with_compare_digest_alone(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MAC is compared by hmac.compare_digest (constant time), and nothing else decides:
    a forged MAC passes when compare_digest is made to say yes, and a genuine one fails when
    it says no."""
    token = signer.make("unsubscribe", 42, 7, ADDRESS)
    calls: list[tuple[bytes, bytes]] = []
    answer = [True]

    def compare_digest(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return answer[0]

    monkeypatch.setattr(hmac, "compare_digest", compare_digest)
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 0xFF
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert signer.verify(forged, "unsubscribe", ADDRESS) is not None
    assert len(calls) == 1 and len(calls[0][0]) == len(calls[0][1]) == 16
    answer[0] = False
    assert signer.verify(token, "unsubscribe", ADDRESS) is None
    assert len(calls) == 2


def test_tokens_in_sent_mail_verify_for_their_recipient_only(site: Config, state: Database) -> None:
    sender = WireSender()
    _send(site, state, sender)
    signer = Signer(SECRET.encode())
    for msg in sender.sent:
        assert isinstance(msg, EditionMessage)
        token = msg.unsubscribe_url.rsplit("/", 1)[1]
        assert signer.verify(token, "unsubscribe", msg.recipient) is not None
        others = [m.recipient for m in sender.sent if m.recipient != msg.recipient]
        assert all(signer.verify(token, "unsubscribe", o) is None for o in others)


# --- secrets --------------------------------------------------------------------------------

SMTP_USER = "ada"
POSTMARK_TOKEN = "pm-server-token-5ecret-77f1"


def _secret_forms(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw).rstrip(b"=")]


def _assert_nowhere(secrets: list[str], texts: dict[str, str], folder: Path) -> None:
    for secret in secrets:
        for where, text in texts.items():
            assert secret not in text, f"{secret!r} in {where}"
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for form in _secret_forms(secret):
                    assert form not in data, f"{secret!r} in {path}"


def test_secrets_never_reach_logs_messages_outputs_or_the_database(
    make_project: MakeProject,
    frozen_now: object,
    make_smtp_server: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: SMTPServer = make_smtp_server(starttls=False, auth_over_plain=True)
    config = make_project(
        {"issues/good.md": GOOD_ISSUE},
        extra_config=f"""
[sender]
kind = "smtp"
concurrency = 2

[sender.smtp]
host = "127.0.0.1"
port = {server.port}
security = "none"
username = "{SMTP_USER}"
password_env = "SMTP_PW"
timeout = 5
""",
    )
    env = {"SMTP_PW": PASSWORD, "POSTMARK_SERVER_TOKEN": POSTMARK_TOKEN}
    caplog.set_level(logging.DEBUG)
    texts: dict[str, str] = {}
    assert run(config.root, "subscribers", "add", "reader@example.org").exit_code == 0
    for args in (
        ["build"],
        ["send", "1", "--yes"],
        ["send", "1", "--dry-run"],
        ["send", "1", "--to", "me@example.org"],
        ["status", "1"],
    ):
        result = run(config.root, *args, env=env)
        assert result.exit_code == 0, result.output
        texts[" ".join(args)] = result.output
    assert len(server.messages) == 2 and server.messages[0].login == SMTP_USER

    # A provider that refuses the token and echoes it back (as some error bodies do).
    def refuse(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Postmark-Server-Token"] == POSTMARK_TOKEN
        return httpx.Response(
            401,
            json={"ErrorCode": 10, "Message": f"Bad or missing Server API token {POSTMARK_TOKEN}"},
        )

    monkeypatch.setattr(
        "newsletter.senders.http.make_client",
        lambda timeout=30.0: httpx.Client(transport=httpx.MockTransport(refuse)),
    )
    assert run(config.root, "subscribers", "add", "second@example.org").exit_code == 0
    refused = run(config.root, "send", "1", "--yes", "--sender", "postmark", env=env)
    assert refused.exit_code == 1 and "refused the credentials (HTTP 401)" in refused.stderr
    texts["send --sender postmark"] = refused.output

    # Per-message errors echoing the token are stored in the ledger: they must be masked too.
    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text=f"upstream said: {POSTMARK_TOKEN} overloaded")

    monkeypatch.setattr(
        "newsletter.senders.http.make_client",
        lambda timeout=30.0: httpx.Client(transport=httpx.MockTransport(echo)),
    )
    config.path.write_text(
        config.path.read_text("utf-8").replace(
            "concurrency = 2", "concurrency = 2\nmax_attempts = 1"
        ),
        "utf-8",
    )
    failed = run(config.root, "send", "1", "--yes", "--sender", "postmark", env=env)
    texts["send --sender postmark (503)"] = failed.output
    assert "***" in run(config.root, "status", "1").stdout
    texts["logs"] = caplog.text
    assert caplog.records, "nothing was logged: the log check would prove nothing"
    _assert_nowhere([SECRET, PASSWORD, POSTMARK_TOKEN], texts, config.root)


# --- SMTP credentials -----------------------------------------------------------------------


def _smtp_site(make_project: MakeProject, port: int, security: str) -> Config:
    return make_project(
        {"issues/good.md": GOOD_ISSUE},
        extra_config=f"""
[sender]
kind = "smtp"

[sender.smtp]
host = "127.0.0.1"
port = {port}
security = "{security}"
username = "ada"
password_env = "SMTP_PW"
timeout = 5
""",
    )


def test_smtp_never_sends_credentials_unencrypted_unless_told_to(
    make_project: MakeProject, frozen_now: object, make_smtp_server: Any
) -> None:
    """A server without STARTTLS that would accept AUTH in plain text (as a downgrading
    attacker's would): the default security refuses before AUTH, and only an explicit
    security = "none" logs in."""
    server: SMTPServer = make_smtp_server(starttls=False, auth_over_plain=True)
    config = _smtp_site(make_project, server.port, "starttls")
    assert run(config.root, "subscribers", "add", "reader@example.org").exit_code == 0
    env = {"SMTP_PW": PASSWORD}
    refused = run(config.root, "send", "1", "--yes", env=env)
    assert refused.exit_code == 1, refused.output
    assert "does not offer STARTTLS; refusing to send unencrypted" in refused.stderr
    assert server.auth_attempts == [] and server.messages == []
    assert PASSWORD not in refused.output
    config.path.write_text(config.path.read_text("utf-8").replace('"starttls"', '"none"'), "utf-8")
    sent = run(config.root, "send", "1", "--yes", env=env)
    assert sent.exit_code == 0, sent.output
    assert len(server.auth_attempts) == 1 and server.auth_attempts[0].endswith(" ada")
    assert [m.login for m in server.messages] == ["ada"]


# --- listening addresses --------------------------------------------------------------------


def test_serve_listens_on_loopback_by_default(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("newsletter.cli_serve") is None:
        pytest.skip("newsletter/cli_serve.py does not exist yet")
    import uvicorn

    import newsletter.cli_serve  # noqa: F401 - registers `serve` (as cli.py will)

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    result = run(site.root, "serve")
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "127.0.0.1"


def test_preview_listens_on_loopback_by_default() -> None:
    from newsletter.cli import cli
    from newsletter.preview import command

    assert inspect.signature(command.background_server).parameters["host"].default == "127.0.0.1"
    preview = cli.commands["preview"]
    host = next(p for p in preview.params if p.name == "host")
    assert host.default == "127.0.0.1"
