"""End to end over real sockets: `newsletter serve` in its own process, mail through aiosmtpd.

subscribe → confirmation mail → confirm link → edition 1 delivered → one-click unsubscribe
from its List-Unsubscribe header → edition 2 skips the reader.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import cast

import httpx
import pytest

from newsletter.config import Config, load_config
from newsletter.deliver.send import plan_send, send_edition
from newsletter.models import SubscriberStatus
from newsletter.state import subscribers
from newsletter.state.db import open_database
from tests.conftest import issue
from tests.serve.conftest import ENV
from tests.smtpd_fixture import SMTPServer, smtp_server

__all__ = ["smtp_server"]  # the fixture, found by name
READER = "reader@example.org"
OTHER = "other@example.org"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def project(root: Path, port: int, smtp: SMTPServer) -> Config:
    root.mkdir()
    (root / "config.toml").write_text(
        f"""\
[newsletter]
title = "E2E Digest"
base_url = "https://digest.example.org/"
email = "digest@example.org"
timezone = "UTC"

[editions]
group_by = "week"
preheader = "{{start:%Y-%m-%d}} to {{end:%Y-%m-%d}}"

[email]
from = "E2E Digest <digest@example.org>"
# The archive lives elsewhere; links in mail lead to this service (and so do confirmations).
unsubscribe_url = "http://127.0.0.1:{port}/unsubscribe/"

[sender]
kind = "smtp"

[sender.smtp]
host = "127.0.0.1"
port = {smtp.port}
security = "none"
""",
        encoding="utf-8",
    )
    (root / "issues").mkdir()
    (root / "issues" / "a.md").write_text(issue("First paper", "2024-04-09"), encoding="utf-8")
    (root / "issues" / "b.md").write_text(issue("Second paper", "2024-04-16"), encoding="utf-8")
    return load_config(root, environ={})


@pytest.fixture
def server(tmp_path: Path, smtp_server: SMTPServer) -> Iterator[tuple[Config, str]]:
    """`newsletter serve` as a real process on a free loopback port; stopped afterwards."""
    port = free_port()
    config = project(tmp_path / "site", port, smtp_server)
    log = (tmp_path / "serve.log").open("wb")
    # `import newsletter.cli_serve` stands in for the line cli.py gets when this lands.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import newsletter.cli_serve; from newsletter.cli import main; main()",
            "-C",
            str(config.root),
            "serve",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("serve did not start:\n" + (tmp_path / "serve.log").read_text())
            time.sleep(0.1)
        yield config, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def wait_for(smtp: SMTPServer, recipient: str, count: int) -> EmailMessage:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        got = [m for m in smtp.messages if recipient in m.rcpt_tos]
        if len(got) >= count:
            return cast(EmailMessage, message_from_bytes(got[count - 1].content, policy=default))
        time.sleep(0.05)
    raise AssertionError(f"no message #{count} for {recipient}")


def status(config: Config, email: str) -> SubscriberStatus:
    with open_database(config.database_url) as db:
        sub = subscribers.get(db, email)
    assert sub is not None
    return sub.status


def send(config: Config, number: int) -> None:
    with open_database(config.database_url) as db:
        plan = plan_send(config, number, db=db)
        report = send_edition(config, plan, db=db, environ=ENV)
    assert report.run.failed == 0 and report.run.sent >= 1


def test_subscribe_confirm_receive_unsubscribe_skip(
    server: tuple[Config, str], smtp_server: SMTPServer
):
    config, url = server
    with httpx.Client(base_url=url, timeout=10) as browser:
        form = browser.get("/subscribe")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert form.status_code == 200 and token
        answer = browser.post(
            "/subscribe", data={"csrf_token": token.group(1), "email": READER, "name": "Reader"}
        )
        assert answer.status_code == 200 and "confirmation link is on its way" in answer.text

        confirmation = wait_for(smtp_server, READER, 1)
        assert confirmation["Subject"] == "Confirm your subscription to E2E Digest"
        body = confirmation.get_body(("plain",))
        assert body is not None
        link = re.search(rf"{re.escape(url)}/confirm/[A-Za-z0-9_-]{{40}}", body.get_content())
        assert link, body.get_content()
        assert status(config, READER) is SubscriberStatus.PENDING
        confirmed = browser.get(link.group(0))
        assert confirmed.status_code == 200 and "You are subscribed" in confirmed.text
    assert status(config, READER) is SubscriberStatus.ACTIVE

    with open_database(config.database_url) as db:
        subscribers.add(db, OTHER)
    send(config, 1)
    edition = wait_for(smtp_server, READER, 2)
    assert edition["Subject"] == "E2E Digest #1"
    assert edition["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe = re.search(
        r"<(http://[^>]+/unsubscribe/[A-Za-z0-9_-]{40})>", str(edition["List-Unsubscribe"])
    )
    assert unsubscribe, edition["List-Unsubscribe"]

    # What a mailbox provider does for RFC 8058: a bare POST, no cookies, no page.
    answer = httpx.post(
        unsubscribe.group(1),
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 200
    assert status(config, READER) is SubscriberStatus.UNSUBSCRIBED

    before = len(smtp_server.messages)
    send(config, 2)
    later = smtp_server.messages[before:]
    assert [m.rcpt_tos for m in later] == [(OTHER,)]
    assert READER not in [r for m in later for r in m.rcpt_tos]
