"""SMTPSender against the real aiosmtpd server on loopback: wire format, replies, TLS, pool."""

from __future__ import annotations

import dataclasses
import functools
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from newsletter.errors import PermanentSendError
from newsletter.senders.base import Outcome, SimpleMessage
from newsletter.senders.smtp import SMTPSender, is_hard_bounce, queue_id
from newsletter.senders.smtp_wire import dot_stuff, fix_line_endings
from tests.senders import make_message
from tests.smtpd_fixture import PASSWORD, SMTPServer, ca_file, make_smtp_server, smtp_server

__all__ = ["make_smtp_server", "smtp_server"]  # fixtures, imported until conftest registers them

MakeServer = Callable[..., SMTPServer]


@pytest.fixture
def sender_for() -> Iterator[Callable[..., SMTPSender]]:
    """Build senders for a server (STARTTLS + AUTH by default) and close them all afterwards."""
    made: list[SMTPSender] = []

    def make(server: SMTPServer, **options: Any) -> SMTPSender:
        credentials = options.pop("auth", True)
        options.setdefault("security", "starttls")
        if options["security"] != "none":
            options.setdefault("ca_file", ca_file())
        if options["security"] == "starttls" and credentials:
            options.setdefault("username", "ada")
            options.setdefault("password", PASSWORD)
        sender = SMTPSender(server.host, server.port, helo="test.example.org", **options)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


class Fixed(SimpleMessage):
    """A SimpleMessage built once: MIME boundaries are random, so each as_bytes() differs."""

    @functools.cached_property
    def raw(self) -> bytes:
        return super().as_bytes()

    def as_bytes(self) -> bytes:
        return self.raw


def fixed(i: int, **changes: Any) -> Fixed:
    msg = make_message(i, **changes)
    return Fixed(**{f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)})


def parsed(content: bytes) -> EmailMessage:
    msg = message_from_bytes(content, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


# happy path ----------------------------------------------------------------------------------
@pytest.mark.parametrize("pipelining", [True, False])
def test_parallel_sends_reuse_four_connections(
    make_smtp_server: MakeServer, sender_for: Callable[..., SMTPSender], pipelining: bool
) -> None:
    server = make_smtp_server(pipelining=pipelining)
    sender = sender_for(server, connections=4)
    messages = [make_message(i) for i in range(60)]
    with ThreadPoolExecutor(8) as pool:  # more threads than connections: they must queue
        results = [r for batch in pool.map(lambda m: sender.send([m]), messages) for r in batch]

    assert [r.outcome for r in results] == [Outcome.SENT] * 60
    assert [r.message_id for r in results] == [m.message_id for m in messages]
    assert len({r.provider_id for r in results}) == 60 and all(r.provider_id for r in results)
    assert sorted(server.recipients) == sorted(m.recipient for m in messages)
    assert 1 <= server.connections <= 4 and sender.opened == server.connections
    assert all(m.tls and m.login == "ada" for m in server.messages)


def test_bytes_arrive_intact_with_cjk_subject(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    msg = fixed(3, subject="ML 论文周报 第7期 — ünïcode")
    [result] = sender_for(smtp_server).send([msg])

    assert result.ok
    [received] = smtp_server.messages
    assert received.content == msg.as_bytes()  # byte for byte, CRLF and all
    assert received.mail_from == "digest@papers.example.org"
    assert received.rcpt_tos == ("reader3@example.org",)
    got = parsed(received.content)
    assert got["Subject"] == "ML 论文周报 第7期 — ünïcode"
    assert got["Message-ID"] == "<7.3@papers.example.org>"
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = got.get_body(("plain",))
    assert text is not None and text.get_content().replace("\r\n", "\n") == msg.text


def test_dot_stuffing_round_trips(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    # A lone "." line would end DATA early if not stuffed; ".." must not lose a dot.
    body = ".\n..\n.starts with a dot\nmiddle . dot\n.\n"
    msg = fixed(1, text=body, html="<p>x</p>\n.\n")
    [result] = sender_for(smtp_server).send([msg])

    assert result.ok
    [received] = smtp_server.messages
    assert received.content == msg.as_bytes()
    plain = parsed(received.content).get_body(("plain",))
    assert plain is not None and plain.get_content().replace("\r\n", "\n") == body


def test_dot_stuff_unit() -> None:
    assert dot_stuff(b".a\r\nb\r\n.\r\n..c\r\n") == b"..a\r\nb\r\n..\r\n...c\r\n.\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n.\r\n"
    assert fix_line_endings(b"a\r\nb\nc\rd\r\n") == b"a\r\nb\r\nc\r\nd\r\n"
    clean = b"a\r\nb\r\n"
    assert fix_line_endings(clean) is clean


def test_bare_lf_is_rejected_by_the_fixture_but_our_bytes_pass(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    raw = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: x\r\n\r\nline one\nline two\r\n"
    with smtplib.SMTP(smtp_server.host, smtp_server.port, local_hostname="t") as client:
        client.starttls(context=sender_for(smtp_server).settings.ssl_context)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("a@example.org", ["b@example.org"], raw)  # bytes: sent as-is
    assert refused.value.smtp_code == 554 and b"bare LF" in refused.value.smtp_error
    assert smtp_server.messages == []

    sloppy = Fixed("b@example.org", "x", "a@example.org", "", "", "<s@example.org>")
    sloppy.raw = raw
    [result] = sender_for(smtp_server).send([sloppy])
    assert result.ok
    assert smtp_server.messages[0].content == raw.replace(b"one\nline", b"one\r\nline")


# refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "reply",
    [
        "421 4.7.0 try again later, closing connection",
        "451 4.3.0 greylisted, try later",
        "452 4.5.3 too many recipients",
    ],
)
def test_4xx_is_transient(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender], reply: str
) -> None:
    smtp_server.reject_rcpt("reader0@example.org", reply)
    [result] = sender_for(smtp_server).send([make_message(0)])

    assert result.outcome is Outcome.TRANSIENT and not result.hard_bounce
    assert reply in result.error and "RCPT" in result.error
    assert smtp_server.messages == []


def test_transient_then_accepted_on_the_next_attempt(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    smtp_server.reject_rcpt("reader0@example.org", "451 4.3.0 greylisted", times=1)
    sender = sender_for(smtp_server)
    first, second = sender.send([make_message(0)]), sender.send([make_message(0)])

    assert first[0].outcome is Outcome.TRANSIENT and second[0].ok
    assert smtp_server.recipients == ["reader0@example.org"]
    assert smtp_server.connections == 1  # RSET kept the session usable


def test_421_once_reconnects_and_delivers(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    smtp_server.reject_rcpt("reader0@example.org", "421 4.7.0 too many messages", times=1)
    [result] = sender_for(smtp_server).send([make_message(0)])

    assert result.ok and smtp_server.recipients == ["reader0@example.org"]
    assert smtp_server.connections == 2


def test_user_unknown_is_a_hard_bounce_and_the_batch_goes_on(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    smtp_server.reject_rcpt("reader1@example.org", "550 5.1.1 <reader1@example.org>: user unknown")
    smtp_server.reject_rcpt("reader2@example.org", "554 5.7.1 rejected by content policy")
    results = sender_for(smtp_server).send([make_message(i) for i in range(4)])

    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.PERMANENT,
        Outcome.PERMANENT,
        Outcome.SENT,
    ]
    assert results[1].hard_bounce and "5.1.1" in results[1].error
    assert not results[2].hard_bounce and "content policy" in results[2].error
    assert smtp_server.recipients == ["reader0@example.org", "reader3@example.org"]
    assert smtp_server.connections == 1


@pytest.mark.parametrize(
    ("code", "text", "hard"),
    [
        (550, "5.1.1 The email account that you tried to reach does not exist.", True),
        (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", True),
        (553, "5.1.2 bad destination system address", True),
        (550, "Requested action not taken: mailbox unavailable, user unknown", True),
        (550, "5.7.1 Message rejected as spam", False),
        (554, "5.1.1 user unknown", False),  # only 550/551/553 mean the address is gone
        (550, "5.7.1 policy: sender does not exist in our records", False),
    ],
)
def test_hard_bounce_classification(code: int, text: str, hard: bool) -> None:
    assert is_hard_bounce(code, text) is hard


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("2.0.0 Ok: queued as 4F3A2B1C9D", "4F3A2B1C9D"),
        ("OK id=1r2Xab-0003Cd-Ef", "1r2Xab-0003Cd-Ef"),
        (
            "2.0.0 OK  1700000000 d2-20020a05600c4e0200b0040.42 - gsmtp",
            "d2-20020a05600c4e0200b0040.42",
        ),
        ("Ok 0100018c2b7f-4d2a-000000", "0100018c2b7f-4d2a-000000"),
        ("2.0.0 Great success", ""),
    ],
)
def test_queue_id(reply: str, expected: str) -> None:
    assert queue_id(reply) == expected


def test_drop_mid_data_reconnects_once(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    sender = sender_for(smtp_server)
    smtp_server.drop_data(1)
    [first] = sender.send([make_message(0)])
    assert first.ok and smtp_server.recipients == ["reader0@example.org"]
    assert smtp_server.connections == 2

    smtp_server.drop_data(2)  # dropped again after reconnecting: give up, retry later
    [second] = sender.send([make_message(1)])
    assert second.outcome is Outcome.TRANSIENT and "closed" in second.error.lower()
    assert smtp_server.recipients == ["reader0@example.org"]


def test_idle_connections_closed_by_the_server_are_replaced(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    sender = sender_for(smtp_server, connections=2)
    assert all(r.ok for r in sender.send([make_message(0), make_message(1)]))
    smtp_server.disconnect_all()
    results = sender.send([make_message(2), make_message(3)])

    assert all(r.ok for r in results)
    assert smtp_server.recipients == [f"reader{i}@example.org" for i in range(4)]
    assert smtp_server.connections == 2


@pytest.mark.parametrize("stage", ["DATA", "connect"])
def test_stalled_server_times_out_as_transient(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender], stage: str
) -> None:
    smtp_server.stall(stage)
    sender = sender_for(smtp_server, timeout=0.5)
    started = time.monotonic()
    [result] = sender.send([make_message(0)])
    elapsed = time.monotonic() - started

    assert result.outcome is Outcome.TRANSIENT and "timed out" in result.error
    assert 0.4 < elapsed < 3  # one timeout, no blind retry that doubles it
    smtp_server.release()
    [after] = sender.send([make_message(1)])
    assert after.ok and smtp_server.recipients == ["reader1@example.org"]


def test_421_greeting_is_transient_554_stops_the_run(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    sender = sender_for(smtp_server)
    smtp_server.connect_reply = "421 4.3.2 service shutting down"
    [result] = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT and "421 4.3.2" in result.error

    smtp_server.connect_reply = "554 5.7.1 your IP is on a blocklist"
    with pytest.raises(PermanentSendError, match="blocklist"):
        sender.send([make_message(0)])

    smtp_server.connect_reply = ""
    smtp_server.helo_reply = "421 4.7.0 too busy"
    [busy] = sender.send([make_message(0)])
    assert busy.outcome is Outcome.TRANSIENT and "too busy" in busy.error
    assert smtp_server.messages == []


def test_connection_refused_is_transient(sender_for: Callable[..., SMTPSender]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sender = SMTPSender("127.0.0.1", port, security="none", helo="t", timeout=2)
    with sender:
        [result] = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT and "connect" in result.error


def test_crlf_in_an_envelope_address_is_refused_before_connecting(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    evil = make_message(0, recipient="a@example.org>\r\nRCPT TO:<victim@example.org")
    spaced = make_message(1, recipient="a b@example.org")
    results = sender_for(smtp_server).send([evil, spaced])

    assert [r.outcome for r in results] == [Outcome.PERMANENT, Outcome.PERMANENT]
    assert "envelope" in results[0].error
    assert smtp_server.connections == 0 and smtp_server.messages == []


def test_non_ascii_address_uses_smtputf8(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    msg = Fixed("读者@例子.example", "你好", "digest@papers.example.org", "", "", "<u@example>")
    msg.raw = (
        "From: digest@papers.example.org\r\nTo: 读者@例子.example\r\nSubject: 你好\r\n"
        "Message-ID: <u@example>\r\n\r\n你好\r\n"
    ).encode()
    [result] = sender_for(smtp_server).send([msg])
    assert result.ok
    assert smtp_server.recipients == ["读者@例子.example"]
    assert smtp_server.messages[0].content == msg.raw


# security ------------------------------------------------------------------------------------
def test_wrong_password_stops_the_run_without_echoing_it(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    sender = sender_for(smtp_server, password="not-the-password")
    with pytest.raises(PermanentSendError) as failed:
        sender.send([make_message(0)])
    assert "'ada'" in failed.value.message and "535" in failed.value.message
    assert "not-the-password" not in " ".join(failed.value.lines())
    assert smtp_server.messages == []


def test_starttls_missing_refuses_to_send_credentials(
    make_smtp_server: MakeServer, sender_for: Callable[..., SMTPSender]
) -> None:
    server = make_smtp_server(starttls=False, auth_over_plain=True)
    with pytest.raises(PermanentSendError, match="does not offer STARTTLS"):
        sender_for(server).send([make_message(0)])
    assert server.auth_attempts == [] and server.messages == []


def test_starttls_missing_is_an_error_even_without_credentials(
    make_smtp_server: MakeServer, sender_for: Callable[..., SMTPSender]
) -> None:
    server = make_smtp_server(starttls=False)
    with pytest.raises(PermanentSendError, match="STARTTLS"):
        sender_for(server, auth=False).send([make_message(0)])
    assert server.messages == []


def test_plain_auth_only_when_security_none_is_explicit(
    make_smtp_server: MakeServer, sender_for: Callable[..., SMTPSender]
) -> None:
    server = make_smtp_server(starttls=False, auth_over_plain=True)
    sender = sender_for(server, security="none", username="ada", password=PASSWORD)
    [result] = sender.send([make_message(0)])

    assert result.ok
    [received] = server.messages
    assert received.login == "ada" and not received.tls
    assert len(server.auth_attempts) == 1


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_auth_mechanisms(
    make_smtp_server: MakeServer, sender_for: Callable[..., SMTPSender], mechanism: str
) -> None:
    server = make_smtp_server(auth=(mechanism,))
    [result] = sender_for(server).send([make_message(0)])
    assert result.ok and server.auth_attempts == [f"{mechanism} ada"]
    assert server.messages[0].login == "ada"


def test_a_rcpt_hook_scripts_any_policy(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    smtp_server.rcpt_hook = lambda rcpt: "450 4.2.1 mailbox busy" if "1" in rcpt else None
    results = sender_for(smtp_server).send([make_message(i) for i in range(3)])
    assert [r.outcome for r in results] == [Outcome.SENT, Outcome.TRANSIENT, Outcome.SENT]
    assert "450 4.2.1 mailbox busy" in results[1].error


def test_untrusted_certificate_is_refused(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    sender = sender_for(smtp_server, ca_file=None)  # the system CAs do not know the test CA
    with pytest.raises(PermanentSendError, match="cannot be trusted"):
        sender.send([make_message(0)])
    assert smtp_server.auth_attempts == [] and smtp_server.messages == []


def test_implicit_tls(make_smtp_server: MakeServer, sender_for: Callable[..., SMTPSender]) -> None:
    server = make_smtp_server(implicit_tls=True, starttls=False)
    [result] = sender_for(server, security="tls").send([make_message(0)])
    assert result.ok and server.messages[0].tls


def test_close_quits_idle_connections_and_refuses_more_work(
    smtp_server: SMTPServer, sender_for: Callable[..., SMTPSender]
) -> None:
    sender = sender_for(smtp_server)
    assert sender.send([make_message(0)])[0].ok
    sender.close()
    with pytest.raises(RuntimeError, match="closed"):
        sender.send([make_message(1)])
