"""Subscriber records: validation, case-insensitive dedupe, suppression, paging, export."""

from __future__ import annotations

import csv
import io

import pytest

from newsletter.errors import NewsletterError
from newsletter.models import Subscriber, SubscriberStatus
from newsletter.state import Database, SubscriberError, address_key
from newsletter.state import subscribers as subs


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("ada", "must have an @-sign"),
        ("ada@example", "It should have a period"),
        ("ada lovelace@example.org", "invalid characters before the @-sign"),
        ("ada@@example.org", "invalid characters"),
        ("ada@example.org\nBcc: eve@example.org", "invalid characters"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(db: Database, address: str, why: str) -> None:
    with pytest.raises(SubscriberError) as info:
        subs.add(db, address)
    assert isinstance(info.value, NewsletterError)
    assert why in info.value.message
    assert repr(address.strip()) in info.value.message
    assert subs.count(db)["active"] == 0


def test_cjk_and_idn_addresses_are_kept_as_given(db: Database) -> None:
    cjk = subs.add(db, "用户@例子.广告", "用户", ["新闻"])
    idn = subs.add(db, "Jürgen@Bücher.de", "Jürgen")
    assert (cjk.email, cjk.name, cjk.tags) == ("用户@例子.广告", "用户", ("新闻",))
    assert idn.email == "Jürgen@Bücher.de"
    assert subs.get(db, "jürgen@bücher.de") == idn
    # The punycode spelling of the same domain is the same subscriber.
    assert subs.get(db, "用户@xn--fsqu00a.xn--4rr70v") == cjk
    with pytest.raises(SubscriberError, match="already on the list"):
        subs.add(db, "jürgen@xn--bcher-kva.de")


def test_dedupe_is_case_insensitive(db: Database) -> None:
    first = subs.add(db, "  Ada@Example.ORG ", "Ada")
    assert first.email == "Ada@Example.ORG"
    assert address_key("ADA@example.org") == "ada@example.org"
    with pytest.raises(SubscriberError, match=r"Ada@EXAMPLE\.org is already on the list"):
        subs.add(db, "Ada@EXAMPLE.org")
    assert subs.get(db, "ada@example.ORG") == first
    assert subs.count(db) == {
        "pending": 0,
        "active": 1,
        "unsubscribed": 0,
        "bounced": 0,
        "complained": 0,
    }


@pytest.mark.parametrize(
    "name", ["Ada\r\nBcc: eve@example.org", "Ada\nLovelace", "A\x00da", "Ada\u2028Lovelace"]
)
def test_names_with_line_breaks_are_refused(db: Database, name: str) -> None:
    with pytest.raises(SubscriberError, match="line break or control character"):
        subs.add(db, "ada@example.org", name)
    assert subs.get(db, "ada@example.org") is None


def test_tags_are_split_trimmed_lowercased_and_deduplicated(db: Database) -> None:
    s = subs.add(db, "ada@example.org", tags="AI; ml ,ai,,Robots")
    assert s.tags == ("ai", "ml", "robots")
    assert subs.get(db, "ada@example.org") == s


def test_unsubscribe_suppresses_and_only_reactivate_lifts_it(db: Database) -> None:
    subs.add(db, "ada@example.org", "Ada")
    changed = subs.set_status(
        db, "ADA@example.org", SubscriberStatus.UNSUBSCRIBED, reason="clicked unsubscribe"
    )
    assert changed is not None and changed.status is SubscriberStatus.UNSUBSCRIBED
    assert subs.suppression(db, "ada@example.org") == "clicked unsubscribe"
    with pytest.raises(SubscriberError, match=r"suppressed \(clicked unsubscribe\)"):
        subs.set_status(db, "ada@example.org", SubscriberStatus.ACTIVE)
    back = subs.reactivate(db, "ada@example.org")
    assert back.status is SubscriberStatus.ACTIVE
    assert subs.suppression(db, "ada@example.org") is None


def test_suppression_survives_remove_and_blocks_add(db: Database) -> None:
    subs.add(db, "ada@example.org")
    subs.set_status(db, "ada@example.org", SubscriberStatus.BOUNCED)
    assert subs.remove(db, "Ada@Example.org") is True
    assert subs.remove(db, "ada@example.org") is False
    assert subs.get(db, "ada@example.org") is None
    with pytest.raises(SubscriberError, match=r"suppressed \(bounced\)") as info:
        subs.add(db, "ada@example.org")
    assert info.value.hint and "reactivate" in info.value.hint
    # Double opt-in may start again (pending, not mailed), and only confirmation re-activates.
    pending = subs.add(db, "ada@example.org", status=SubscriberStatus.PENDING)
    assert pending.status is SubscriberStatus.PENDING
    assert subs.suppression(db, "ada@example.org") == "bounced"
    assert subs.reactivate(db, "ada@example.org").status is SubscriberStatus.ACTIVE


def test_a_late_complaint_is_suppressed_even_without_a_subscriber(db: Database) -> None:
    assert subs.set_status(db, "gone@example.org", SubscriberStatus.COMPLAINED) is None
    assert subs.suppression(db, "GONE@example.org") == "complained"
    with pytest.raises(SubscriberError, match="not on the list"):
        subs.reactivate(db, "gone@example.org")


def test_count_by_status(db: Database) -> None:
    for n in range(3):
        subs.add(db, f"a{n}@example.org")
    subs.add(db, "p@example.org", status=SubscriberStatus.PENDING)
    subs.set_status(db, "a0@example.org", SubscriberStatus.UNSUBSCRIBED)
    assert subs.count(db) == {
        "pending": 1,
        "active": 2,
        "unsubscribed": 1,
        "bounced": 0,
        "complained": 0,
    }


def test_iter_subscribers_pages_by_id(db: Database) -> None:
    added = [subs.add(db, f"u{n:02d}@example.org", f"U{n}") for n in range(10)]
    subs.set_status(db, "u03@example.org", SubscriberStatus.UNSUBSCRIBED)
    assert list(subs.iter_subscribers(db, page=3)) == [
        s
        if s.email != "u03@example.org"
        else Subscriber(id=s.id, email=s.email, name=s.name, status=SubscriberStatus.UNSUBSCRIBED)
        for s in added
    ]
    active = list(subs.iter_subscribers(db, SubscriberStatus.ACTIVE, page=4))
    assert [s.email for s in active] == [f"u{n:02d}@example.org" for n in range(10) if n != 3]


def test_export_then_import_round_trips(db: Database, tmp_path: object) -> None:
    subs.add(db, "Ada@Example.org", 'Ada "the Countess", Lovelace', ["ai", "math"])
    subs.add(db, "用户@例子.广告", "用户")
    subs.add(db, "p@example.org", status=SubscriberStatus.PENDING)
    out = io.StringIO()
    assert subs.export_csv(db, out, SubscriberStatus.ACTIVE) == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [(r["email"], r["name"], r["tags"], r["status"]) for r in rows] == [
        ("Ada@Example.org", 'Ada "the Countess", Lovelace', "ai;math", "active"),
        ("用户@例子.广告", "用户", "", "active"),
    ]
    assert rows[0]["created_at"].endswith("+00:00")
    # The export is a valid import file: everything is already there.
    from pathlib import Path

    path = Path(str(tmp_path)) / "export.csv"
    path.write_text(out.getvalue(), encoding="utf-8")
    report = subs.import_csv(db, path)
    assert (report.added, report.existing, report.problems) == (0, 2, ())


def test_racing_adds_of_one_address_leave_one_subscriber(db_url: str) -> None:
    import threading

    from newsletter.state import open_database

    dbs = [open_database(db_url) for _ in range(2)]
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def race(n: int) -> None:
        barrier.wait()
        try:
            subs.add(dbs[n % 2], f"Ada@Example.org{' ' * n}", f"Ada {n}")
            outcomes.append("added")
        except SubscriberError as exc:
            outcomes.append(exc.message.split(" is ")[1][:19])

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["added"] + ["already on the list"] * 5
        assert subs.count(dbs[0])["active"] == 1
    finally:
        for d in dbs:
            d.close()
