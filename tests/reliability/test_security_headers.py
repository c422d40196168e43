"""Security: no header injection through titles, subjects, names, addresses or config."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from newsletter.config import Config
from newsletter.deliver.send import open_state, plan_send, send_edition
from newsletter.errors import NewsletterError
from newsletter.models import DeliveryStatus
from newsletter.senders.postmark import PostmarkSender
from newsletter.state import subscribers
from newsletter.state.db import Database
from newsletter.state.ledger import Ledger
from newsletter.state.schema import deliveries
from newsletter.state.schema import subscribers as subscribers_table
from tests.conftest import BASE_CONFIG, MakeProject
from tests.reliability import assert_no_crash, located_lines, run
from tests.reliability.security_support import (
    BREAKS,
    GOOD_ISSUE,
    INJECTED,
    SEND_ENV,
    YAML_ESCAPE,
    WireSender,
    _assert_clean_wire,
    _send,
)

# --- header injection -----------------------------------------------------------------------


@pytest.mark.parametrize("brk", list(BREAKS.values()), ids=list(BREAKS))
@pytest.mark.parametrize(
    ("rel", "key"),
    [
        ("issues/evil.md", "title"),
        ("editions/2024-W15.md", "subject"),
        ("editions/2024-W15.md", "title"),
        ("editions/2024-W15.md", "preheader"),
    ],
)
def test_line_breaks_in_titles_and_subjects_are_refused(
    site: Config, state: Database, rel: str, key: str, brk: str
) -> None:
    value = f'"Hello{YAML_ESCAPE[brk]}{INJECTED}"'
    text = f"---\n{key}: {value}\n" + ("date: 2024-04-10\n" if rel.startswith("issues") else "")
    (site.root / rel).parent.mkdir(parents=True, exist_ok=True)
    (site.root / rel).write_text(text + "---\nBody.\n", "utf-8")
    for args in (["check"], ["send", "1", "--yes"]):
        result = run(site.root, *args)
        assert_no_crash(result)
        assert result.exit_code == 1, result.output
        problems = [m.group(0) for m in located_lines(result.stderr)]
        assert (
            f"{rel}:2: {key}: must be a single line (no line breaks or control characters)"
            in problems
        ), result.stderr
    assert not (site.root / "outbox").exists()
    assert Ledger(state).summary(1).total == 0


def _set_key(text: str, section: str, key: str, value: str) -> tuple[str, int]:
    """``text`` with ``key = value`` as the first line of ``[section]`` (any old one removed),
    and the number of that line."""
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    body = [line for line in lines[start + 1 : end] if not line.startswith(f"{key} = ")]
    lines[start + 1 : end] = [f"{key} = {value}", *body]
    return "\n".join(lines) + "\n", start + 2


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("email", "from"),
        ("email", "list_id"),
        ("email", "reply_to"),
        ("newsletter", "title"),
        ("editions", "subject"),
        ("editions", "title"),
    ],
)
def test_line_breaks_in_config_header_values_are_refused(
    site: Config, state: Database, section: str, key: str
) -> None:
    text, line = _set_key(
        site.path.read_text("utf-8"), section, key, f'"A <a@example.org>\\r\\n{INJECTED}"'
    )
    site.path.write_text(text, "utf-8")
    result = run(site.root, "send", "1", "--yes")
    assert_no_crash(result)
    assert result.exit_code == 1
    assert (
        f"config.toml:{line}: [{section}] {key}: must not contain line breaks"
        in result.stderr.splitlines()
    ), result.stderr
    assert not (site.root / "outbox").exists()


def test_line_breaks_from_environment_overrides_are_refused(site: Config, state: Database) -> None:
    result = run(
        site.root,
        "send",
        "1",
        "--yes",
        env={"NEWSLETTER_EMAIL__FROM": f"A <a@example.org>\r\n{INJECTED}"},
    )
    assert result.exit_code == 1
    assert "[email] from: must not contain line breaks" in result.stderr
    assert not (site.root / "outbox").exists()


@pytest.mark.parametrize("key", ["subject", "title"])
def test_a_line_break_made_by_a_date_format_never_reaches_the_wire(
    make_project: MakeProject, frozen_now: object, key: str
) -> None:
    """strftime's %n passes every text check; the message assembly is the last line of defence
    (check_header), and it must refuse the whole send."""
    config = make_project(
        {"issues/good.md": GOOD_ISSUE},
        config=BASE_CONFIG.replace(
            'title = "Test Digest #{number}"', f'{key} = "Hi{{start:%n}}{INJECTED}"'
        ),
    )
    db = open_state(config)
    try:
        subscribers.add(db, "reader@example.org")
        sender = WireSender()
        with pytest.raises(NewsletterError, match="Subject header contains a line break"):
            _send(config, db, sender)
        assert sender.wire == [] and sender.attempts == 0
        assert Ledger(db).summary(1).sent == 0
    finally:
        db.close()
    result = run(config.root, "send", "1", "--yes")
    assert result.exit_code == 1 and "Subject header contains a line break" in result.stderr
    assert not list((config.root / "outbox").rglob("*.eml"))


@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\x00"], ids=["crlf", "lf", "cr", "nul"])
def test_line_breaks_in_subscriber_names_and_addresses_are_refused(
    site: Config, state: Database, brk: str
) -> None:
    added = run(site.root, "subscribers", "add", "eve@example.org", "--name", f"Eve{brk}{INJECTED}")
    assert added.exit_code == 1 and "contains a line break or control character" in added.stderr
    added = run(site.root, "subscribers", "add", f"eve@example.org{brk}{INJECTED}")
    assert added.exit_code == 1 and "invalid email address" in added.stderr
    csv_file = site.root / "evil.csv"
    csv_file.write_text(
        "email,name\n"
        f'"mallory@example.org","M{brk}{INJECTED}"\n'
        f'"trudy@example.org{brk}{INJECTED}",T\n'
        "ok@example.org,Fine\n",
        "utf-8",
        newline="",
    )
    imported = run(site.root, "subscribers", "import", str(csv_file))
    assert imported.exit_code == 1
    assert {int(m["line"]) for m in located_lines(imported.stderr)} == {2, 3 + (brk in "\r\n")}
    assert subscribers.get(state, "mallory@example.org") is None
    assert subscribers.get(state, "ok@example.org") is not None
    test = run(site.root, "send", "1", "--to", f"me@example.org{brk}{INJECTED}")
    assert test.exit_code == 1, test.output
    assert not list((site.root / "outbox").rglob("*.eml"))
    seen: list[dict[str, Any]] = []  # an HTTP API never serializes MIME here: refuse earlier
    with pytest.raises(NewsletterError):
        send_edition(
            site,
            plan_send(site, 1, db=state),
            db=state,
            sender=_postmark(seen),
            environ=SEND_ENV,
            to=[f"me@example.org{brk}{INJECTED}"],
        )
    assert seen == []


def _tamper(db: Database, email_addr: str, name: str) -> None:
    """Write a subscriber row straight into the table, as a damaged or hand-edited database
    might hold it: the validation of `subscribers add` never saw it."""
    from newsletter import clock

    with db.transaction() as conn:
        conn.execute(
            insert(subscribers_table).values(
                email=email_addr,
                email_key=email_addr.lower(),
                name=name,
                tags="",
                status="active",
                source="tampered",
                created_at=clock.now(),
                updated_at=clock.now(),
            )
        )


def _postmark(seen: list[dict[str, Any]]) -> PostmarkSender:
    """A Postmark sender whose API accepts everything and keeps each message's JSON."""

    def handler(request: httpx.Request) -> httpx.Response:
        batch = json.loads(request.content)
        seen.extend(batch)
        return httpx.Response(
            200,
            json=[
                {"ErrorCode": 0, "Message": "OK", "MessageID": str(i), "To": m["To"]}
                for i, m in enumerate(batch)
            ],
        )

    return PostmarkSender("pm-token", client=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("kind", ["wire", "postmark"])
@pytest.mark.parametrize("field", ["name", "address"])
def test_a_tampered_subscriber_row_cannot_inject_headers(
    site: Config, state: Database, field: str, kind: str
) -> None:
    """A damaged or hand-edited database bypasses `subscribers add`: message assembly must
    still refuse the line break, whether the sender serializes MIME or posts JSON."""
    evil = "eve@example.org"
    if field == "name":
        _tamper(state, evil, f"Eve\r\n{INJECTED}")
    else:
        evil = f"eve@example.org\r\n{INJECTED}"
        _tamper(state, evil, "Eve")
    seen: list[dict[str, Any]] = []
    sender = WireSender() if kind == "wire" else _postmark(seen)
    with pytest.raises(NewsletterError, match="line break"):
        _send(site, state, sender)
    if isinstance(sender, WireSender):
        for raw, msg in zip(sender.wire, sender.sent, strict=True):
            _assert_clean_wire(raw, msg.recipient)
    assert not any("\r" in m["To"] or "\n" in m["To"] for m in seen), seen
    with state.connect() as conn:
        status = conn.execute(
            select(deliveries.c.status).where(deliveries.c.email == evil)
        ).scalar_one()
    assert status == DeliveryStatus.PENDING


HOSTILE_NAMES = [
    'Eve "Bcc: victim@example.org"',
    "Mallory <mallory@evil.example>",
    "=?utf-8?q?x=0D=0ABcc:_victim@example.org?=",
    "Ünïcödé, Jr. 周",
    "a" * 200,
    "Trudy (comment) ;:,@<>[]",
]


def test_hostile_but_valid_names_stay_inside_the_to_header(site: Config, state: Database) -> None:
    for i, name in enumerate(HOSTILE_NAMES):
        subscribers.add(state, f"hostile{i}@example.org", name)
    sender = WireSender()
    report = _send(site, state, sender)
    assert report.run.sent == 3 + len(HOSTILE_NAMES)
    for raw, msg in zip(sender.wire, sender.sent, strict=True):
        _assert_clean_wire(raw, msg.recipient)
