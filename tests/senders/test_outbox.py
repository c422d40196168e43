"""OutboxSender: a real Maildir, atomic deterministic files, clear failures, a discard mode."""

from __future__ import annotations

import errno
import mailbox
import os
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from newsletter.errors import ConfigError, PermanentSendError
from newsletter.senders import sender_class
from newsletter.senders.base import Outcome
from newsletter.senders.outbox import OutboxSender, maildir_name
from tests.senders import make_message


def outbox(root: Path, **options: object) -> OutboxSender:
    return OutboxSender.from_options({"_root": str(root), **options}, {})


def files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_messages_land_in_a_maildir_mail_clients_can_read(tmp_path: Path) -> None:
    messages = [make_message(i) for i in range(3)]
    results = outbox(tmp_path).send(messages)

    assert [r.outcome for r in results] == [Outcome.SENT] * 3
    box = mailbox.Maildir(tmp_path / "outbox", create=False)
    by_id = {m["Message-ID"]: m for m in box}
    assert sorted(by_id) == sorted(m.message_id for m in messages)
    for msg, result in zip(messages, results, strict=True):
        raw = (tmp_path / "outbox" / "new" / result.provider_id).read_bytes()
        parsed = message_from_bytes(raw, policy=policy.default)
        assert parsed["Subject"] == "ML 论文周报 第7期"
        assert parsed["To"] == f"{msg.name} <{msg.recipient}>"
        assert b"\r\n" in raw and raw.count(b"\n") == raw.count(b"\r\n")
    assert files(tmp_path / "outbox" / "tmp") == [] and files(tmp_path / "outbox" / "cur") == []


def test_names_are_deterministic_and_a_resend_replaces(tmp_path: Path) -> None:
    sender = outbox(tmp_path, path="mail/out")
    first = make_message(1, subject="first version")
    second = make_message(1, subject="second version")  # same Message-ID
    [r1], [r2] = sender.send([first]), sender.send([second])

    new = tmp_path / "mail" / "out" / "new"
    assert r1.provider_id == r2.provider_id == maildir_name(first.message_id)
    assert files(new) == [maildir_name(first.message_id)]
    assert b"Subject: second version" in (new / r2.provider_id).read_bytes()
    assert maildir_name("<a@x>") != maildir_name("<b@x>")
    assert maildir_name("<a@x>") == maildir_name("<a@x>")


@pytest.mark.parametrize("failing", ["fsync", "rename"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_disk_errors_stop_the_run_and_leave_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str, code: int
) -> None:
    sender = outbox(tmp_path)
    msg = make_message(1)
    [ok] = sender.send([msg])  # an earlier good copy must survive a failed resend
    good = (tmp_path / "outbox" / "new" / ok.provider_id).read_bytes()

    def broken(*args: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, failing, broken)
    with pytest.raises(PermanentSendError) as failed:
        sender.send([make_message(1, subject="changed")])
    monkeypatch.undo()

    assert str(tmp_path / "outbox") in failed.value.message
    assert os.strerror(code) in failed.value.message
    assert files(tmp_path / "outbox" / "tmp") == []
    assert files(tmp_path / "outbox" / "new") == [ok.provider_id]
    assert (tmp_path / "outbox" / "new" / ok.provider_id).read_bytes() == good


def test_other_write_errors_are_transient(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sender = outbox(tmp_path)

    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", io_error)
    [result] = sender.send([make_message(0)])
    assert result.outcome is Outcome.TRANSIENT and "I/O error" in result.error
    assert files(tmp_path / "outbox" / "new") == [] and files(tmp_path / "outbox" / "tmp") == []


def test_unwritable_root_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where the outbox folder should be")
    with pytest.raises(PermanentSendError, match="blocker"):
        outbox(tmp_path, path="blocker/outbox").send([make_message(0)])


@pytest.mark.parametrize("options", [{"path": "/dev/null"}, {"discard": True}])
def test_discard_counts_without_writing(tmp_path: Path, options: dict[str, object]) -> None:
    sender = outbox(tmp_path, **options)
    results = sender.send([make_message(i) for i in range(50)])

    assert sender.discarding and all(r.ok for r in results)
    assert sender.count == 50 and sender.bytes > 50 * 500
    assert list(tmp_path.iterdir()) == []


def test_parallel_threads_write_every_message(tmp_path: Path) -> None:
    sender = outbox(tmp_path, fsync=False)
    messages = [make_message(i) for i in range(200)]
    with ThreadPoolExecutor(8) as pool:
        results = [r for batch in pool.map(lambda m: sender.send([m]), messages) for r in batch]

    assert all(r.ok for r in results) and sender.count == 200
    assert len(mailbox.Maildir(tmp_path / "outbox", create=False)) == 200


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failed:
        outbox(tmp_path, path=3, discard="yes", fsnyc=False)
    text = "\n".join(failed.value.lines())
    for key in ("path", "discard", "fsnyc"):
        assert f"[sender.outbox] {key}" in text
    assert sender_class("outbox") is OutboxSender
    assert outbox(tmp_path).path == tmp_path / "outbox"
