"""`newsletter unsubscribe --from-email`: the mailto: List-Unsubscribe path, as an MTA pipe."""

from __future__ import annotations

from email.header import Header
from pathlib import Path

from click.testing import CliRunner

import newsletter.cli_serve  # noqa: F401 - registers `serve` and `unsubscribe` (as cli.py will)
from newsletter.cli import cli
from newsletter.config import Config
from newsletter.models import SubscriberStatus
from newsletter.state import subscribers
from newsletter.state.db import open_database
from newsletter.tokens import Signer
from newsletter.unsubscribe_mail import EX_TEMPFAIL, find_token, process
from tests.serve.conftest import ENV


def message(subject: str, sender: str = "Someone <someone@example.net>", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: unsubscribe@example.org\r\nSubject: {subject}\r\n{extra}"
        "Message-ID: <1@example.net>\r\n\r\nPlease take me off.\r\n"
    ).encode()


def pipe(root: Path, raw: bytes, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        cli,
        ["-C", str(root), "unsubscribe", "--from-email"],
        input=raw,
        env=ENV if env is None else env,
    )
    return result.exit_code, result.stdout, result.stderr


def status(config: Config, email: str) -> SubscriberStatus:
    with open_database(config.database_url) as db:
        sub = subscribers.get(db, email)
    assert sub is not None
    return sub.status


def add(config: Config, email: str) -> tuple[int, str]:
    with open_database(config.database_url) as db:
        sub = subscribers.add(db, email)
    return sub.id, sub.email


def test_token_in_the_subject_unsubscribes(config: Config, signer: Signer):
    sub_id, email = add(config, "ada@example.org")
    token = signer.make("unsubscribe", sub_id, 4, email)
    code, out, _ = pipe(config.root, message(f"unsubscribe {token}"))
    assert code == 0 and out.strip() == f"subscriber {sub_id}: unsubscribed"
    assert status(config, email) is SubscriberStatus.UNSUBSCRIBED
    code, out, _ = pipe(config.root, message(f"Re: unsubscribe {token}"))  # idempotent
    assert code == 0 and "already unsubscribed" in out


def test_token_in_an_encoded_subject(config: Config, signer: Signer):
    sub_id, email = add(config, "bo@example.org")
    token = signer.make("unsubscribe", sub_id, 4, email)
    encoded = Header(f"退订 unsubscribe {token}", "utf-8").encode()
    assert pipe(config.root, message(encoded))[0] == 0
    assert status(config, email) is SubscriberStatus.UNSUBSCRIBED


def test_a_forged_token_falls_back_to_the_from_address_rule(config: Config, signer: Signer):
    victim_id, victim = add(config, "victim@example.org")
    add(config, "someone@example.net")
    forged = Signer(b"not-our-secret-0123456789abcdef").make("unsubscribe", victim_id, 1, victim)
    code, out, _ = pipe(config.root, message(f"unsubscribe {forged}"))
    assert code == 0 and "From address" in out
    assert status(config, victim) is SubscriberStatus.ACTIVE
    assert status(config, "someone@example.net") is SubscriberStatus.UNSUBSCRIBED


def test_from_address_only_when_it_is_on_the_list(config: Config):
    add(config, "ada@example.org")
    code, out, _ = pipe(config.root, message("unsubscribe", "Stranger <x@example.net>"))
    assert code == 0 and "not subscribed: nothing done" in out
    assert status(config, "ada@example.org") is SubscriberStatus.ACTIVE
    code, out, _ = pipe(config.root, message("please remove me", "ADA@example.org"))
    assert code == 0 and status(config, "ada@example.org") is SubscriberStatus.UNSUBSCRIBED


def test_auto_replies_never_unsubscribe_by_from(config: Config):
    add(config, "ada@example.org")
    for extra in ("Auto-Submitted: auto-replied\r\n", "Precedence: bulk\r\n"):
        code, out, _ = pipe(config.root, message("Out of office", "ada@example.org", extra))
        assert code == 0 and "automatic message" in out
    assert status(config, "ada@example.org") is SubscriberStatus.ACTIVE


def test_garbage_is_not_an_error(config: Config):
    for raw in (b"", b"\x00\xff not a message", message("hi", "no address here")):
        code, out, _ = pipe(config.root, raw)
        assert code == 0 and "nothing done" in out


def test_internal_errors_ask_the_mta_to_retry(config: Config):
    code, _, err = pipe(config.root, message("unsubscribe"), env={"NEWSLETTER_SECRET": ""})
    assert code == EX_TEMPFAIL and "NEWSLETTER_SECRET" in err and "retried" in err


def test_the_flag_is_required(config: Config):
    result = CliRunner().invoke(cli, ["-C", str(config.root), "unsubscribe"], env=ENV)
    assert result.exit_code == 2 and "--from-email" in result.stderr


def test_find_token():
    token = "A" * 40
    assert find_token(f"unsubscribe {token}") == token
    assert find_token(f"Re: Unsubscribe  {token} please") == token
    assert find_token(f"unsubscribe {token}B") is None  # 41 characters: not ours
    assert find_token("unsubscribe") is None


def test_process_directly(config: Config, signer: Signer):
    with open_database(config.database_url) as db:
        sub = subscribers.add(db, "cy@example.org")
        outcome = process(
            db, signer, message(f"unsubscribe {signer.make('unsubscribe', sub.id, 1, sub.email)}")
        )
        assert outcome.unsubscribed
        assert subscribers.suppression(db, sub.email) == "unsubscribed: email (token)"
