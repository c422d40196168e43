"""[sender.smtp] options: validation that lists every problem, defaults, secrets, DKIM signing."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.errors import ConfigError
from newsletter.senders import sender_class
from newsletter.senders.smtp import SMTPSender
from tests.senders import make_message
from tests.smtpd_fixture import PASSWORD, SMTPServer, ca_file, smtp_server

__all__ = ["smtp_server"]  # the fixture, imported until conftest registers the plugin

DOMAIN = "papers.example.org"


def build(options: dict[str, Any], environ: dict[str, str] | None = None) -> SMTPSender:
    return SMTPSender.from_options({"_root": "/nonexistent", **options}, environ or {})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as failed:
        build(
            {
                "host": "",
                "port": 70000,
                "security": "ssl",
                "timeout": -1,
                "connections": 0,
                "password": "hunter2",
                "usernme": "ada",
                "envelope_from": "not an address",
                "ca_file": "missing.pem",
                "dkim_selector": "nl",
            }
        )
    text = "\n".join(failed.value.lines())
    for key in (
        "host",
        "port",
        "security",
        "timeout",
        "connections",
        "password",
        "usernme",
        "envelope_from",
        "ca_file",
        "dkim_selector",
    ):
        assert f"[sender.smtp] {key}" in text, key
    assert len(failed.value.problems) == 10
    assert "hunter2" not in text
    assert "password_env" in text  # the password key is explained, not just called unknown


def test_username_needs_the_password_variable_and_never_shows_it() -> None:
    with pytest.raises(ConfigError, match="SMTP_PW is not set"):
        build({"host": "smtp.example.org", "username": "ada", "password_env": "SMTP_PW"})
    sender = build(
        {"host": "smtp.example.org", "username": "ada", "password_env": "SMTP_PW"},
        {"SMTP_PW": "hunter2"},
    )
    assert sender.settings.password == "hunter2"
    assert "hunter2" not in repr(sender.settings)


@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)])
def test_defaults_follow_the_security_mode(security: str, port: int) -> None:
    with build({"host": "smtp.example.org", "security": security}) as sender:
        assert sender.settings.port == port and sender.settings.security == security
        assert sender.settings.timeout == 30.0 and sender.connections == 4
        assert (sender.settings.ssl_context is None) == (security == "none")


def test_ca_file_is_relative_to_the_project(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(Path(ca_file()).read_bytes())
    sender = SMTPSender.from_options(
        {"host": "h", "ca_file": "certs/ca.pem", "_root": str(tmp_path)}, {}
    )
    assert sender.settings.ssl_context is not None
    assert sender_class("smtp") is SMTPSender


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def dns_for(key: rsa.RSAPrivateKey) -> Any:
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"nl._domainkey.{DOMAIN}.".encode() else None

    return txt


def test_dkim_signature_verifies(smtp_server: SMTPServer, rsa_key: rsa.RSAPrivateKey) -> None:
    # OpenSSL 3 writes PKCS#8, and env vars often carry "\n" escapes: both must work.
    pem = (
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
        .replace("\n", "\\n")
    )
    options = {
        "host": smtp_server.host,
        "port": smtp_server.port,
        "ca_file": ca_file(),
        "helo": "t.example.org",
        "username": "ada",
        "password_env": "PW",
        "dkim_selector": "nl",
        "dkim_domain": DOMAIN,
        "dkim_key_env": "KEY",
    }
    with build(options, {"PW": PASSWORD, "KEY": pem}) as sender:
        assert sender.send([make_message(0)])[0].ok

    content = smtp_server.messages[0].content
    assert content.startswith(b"DKIM-Signature: ")
    assert dkim.verify(content, dnsfunc=dns_for(rsa_key))
    signed = content.split(b"h=", 1)[1].split(b";", 1)[0].replace(b"\r\n", b"").replace(b" ", b"")
    for header in (
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"list-unsubscribe",
        b"list-unsubscribe-post",
    ):
        assert header in signed.split(b":"), header
    tampered = content.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        b"List-Unsubscribe-Post: List-Unsubscribe=Two-Clicks",
    )
    assert tampered != content and not dkim.verify(tampered, dnsfunc=dns_for(rsa_key))


def test_unusable_dkim_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="dkim_key_env"):
        build(
            {"host": "h", "dkim_selector": "nl", "dkim_domain": DOMAIN, "dkim_key_env": "K"},
            {"K": "-----BEGIN RSA PRIVATE KEY-----\nbm9wZQ==\n-----END RSA PRIVATE KEY-----"},
        )
    with pytest.raises(ConfigError, match="NEWSLETTER_DKIM_PRIVATE_KEY is not set"):
        build({"host": "h", "dkim_selector": "nl", "dkim_domain": DOMAIN})
