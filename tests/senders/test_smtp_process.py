"""The fixture server in its own process: durable records for crash tests, and SMTP throughput."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from newsletter.senders.base import Outcome, SimpleMessage
from newsletter.senders.smtp import SMTPSender
from tests.senders import make_message
from tests.smtpd_fixture import PASSWORD, ca_file, server_process


def test_server_process_records_each_accepted_recipient(tmp_path: Path) -> None:
    with server_process(tmp_path, "--reject", "reader2@example.org=550 5.1.1 user unknown") as proc:
        with SMTPSender(
            proc.host, proc.port, username="ada", password=PASSWORD, ca_file=ca_file(), helo="t"
        ) as sender:
            results = sender.send([make_message(i) for i in range(4)])
        received = proc.received()  # readable while the server still runs: fsynced per 250

    assert [r.outcome for r in results] == [
        Outcome.SENT,
        Outcome.SENT,
        Outcome.PERMANENT,
        Outcome.SENT,
    ]
    assert received == [
        (f"<7.{i}@papers.example.org>", f"reader{i}@example.org") for i in (0, 1, 3)
    ]
    assert proc.process.returncode == 0  # SIGTERM is a clean shutdown


class Prebuilt(SimpleMessage):
    """A message whose bytes exist already: measures the wire, not MIME assembly."""

    raw = b""

    def as_bytes(self) -> bytes:
        return self.raw


def prebuilt(i: int, raw: bytes) -> Prebuilt:
    msg = Prebuilt(
        f"reader{i}@example.org", "s", "Digest <digest@papers.example.org>", "", "", f"<{i}@x>"
    )
    msg.raw = raw
    return msg


@pytest.mark.slow
def test_throughput_of_40kb_messages_over_four_connections(tmp_path: Path) -> None:
    body = make_message(
        0,
        html="<p>" + "lorem ipsum dolor sit amet " * 1000 + "</p>",
        text="lorem ipsum dolor sit amet\n" * 500,
    ).as_bytes()
    assert 38_000 < len(body) < 48_000
    count = 4000
    messages = [prebuilt(i, body) for i in range(count)]
    failures: list[str] = []
    with (
        server_process(tmp_path, "--no-starttls", record=False) as proc,
        SMTPSender(proc.host, proc.port, security="none", connections=4, helo="t") as sender,
    ):

        def work(share: list[Prebuilt]) -> None:
            for msg in share:
                result = sender.send([msg])[0]
                if not result.ok:
                    failures.append(result.error)

        threads = [threading.Thread(target=work, args=(messages[k::4],)) for k in range(4)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rate = count / (time.perf_counter() - started)
        opened = sender.opened
    print(f"\nSMTP: {rate:.0f} messages/s of {len(body)} bytes over {opened} connections")
    assert failures == [] and opened == 4
    assert rate > 250  # ≈1,500-1,800/s on an idle 2-core VM; a Nagle stall gives ≈90/s
