"""CSV import of subscribers: located problems, dedupe, suppressions kept, whole batches."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, select

from newsletter import clock
from newsletter.errors import Problem, StateError, located
from newsletter.models import SubscriberStatus
from newsletter.state.addresses import SubscriberError, check_address, check_name, parse_tags
from newsletter.state.db import Database
from newsletter.state.schema import UTCDateTime, subscribers, suppressions

CSV_COLUMNS = ("email", "name", "tags")
_IN_CHUNK = 900  # bound parameters per IN (…): under SQLite's oldest limit of 999


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one CSV import did; ``skipped`` (suppressed) and ``problems`` (bad rows) are located."""

    path: str
    rows: int  # data records read (header and blank lines not counted)
    added: int  # new subscribers written
    existing: int  # already on the list: left as they were
    duplicates: int  # repeated in the file (case-insensitively): the first one counts
    batches: int  # transactions committed
    seconds: float
    skipped: tuple[Problem, ...] = ()
    problems: tuple[Problem, ...] = ()

    def summary(self) -> str:
        """One line for the CLI."""
        return (
            f"{self.path}: {self.added} added, {self.existing} already on the list, "
            f"{self.duplicates} duplicates, {len(self.skipped)} suppressed, "
            f"{len(self.problems)} bad rows ({self.rows} rows, {self.batches} batches, "
            f"{self.seconds:.1f} s)"
        )


@dataclass(frozen=True, slots=True)
class _CsvRow:
    line: int  # physical line where the record starts
    email: str
    key: str
    name: str
    tags: str


def import_csv(
    db: Database,
    path: str | os.PathLike[str],
    *,
    strict: bool = False,
    batch_size: int = 5000,
    source: str = "import",
) -> ImportReport:
    """Import ``email,name,tags`` rows (RFC 4180, UTF-8 with or without BOM).

    Good rows are added in batches, each batch one transaction (a crash leaves whole batches);
    bad rows become problems naming their physical line. Addresses already on the list are
    left alone and suppressed ones are skipped, never re-activated. With ``strict`` any bad row
    aborts the import before anything is written (SubscriberError listing every problem).
    """
    started = time.perf_counter()
    shown = os.fspath(path)
    if strict:
        problems = [p for p in _read_csv(Path(path)) if isinstance(p, Problem)]
        if problems:
            raise located(
                problems,
                shown,
                SubscriberError,
                hint="fix these rows and import again; nothing was imported",
            )
    bad: list[Problem] = []
    skipped: list[Problem] = []
    seen: set[str] = set()
    batch: list[_CsvRow] = []
    rows = added = existing = duplicates = batches = 0

    def flush() -> None:
        nonlocal added, existing, batches
        new, old, held = _write_batch(db, batch, source, shown)
        added, existing, batches = added + new, existing + old, batches + 1
        skipped.extend(held)
        batch.clear()

    try:
        for item in _read_csv(Path(path)):
            if isinstance(item, Problem):
                bad.append(item)
                continue
            rows += 1
            if item.key in seen:
                duplicates += 1
                continue
            seen.add(item.key)
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    except StateError as exc:
        raise StateError(
            f"{exc.message} (importing {shown}: {batches} batches with {added} "
            f"new subscribers were committed before this)",
            hint="import the file again once the database is usable: rows already "
            "imported are skipped",
        ) from exc
    return ImportReport(
        path=shown,
        rows=rows + len(bad),
        added=added,
        existing=existing,
        duplicates=duplicates,
        batches=batches,
        seconds=time.perf_counter() - started,
        skipped=tuple(skipped),
        problems=tuple(bad),
    )


def _write_batch(
    db: Database, batch: list[_CsvRow], source: str, shown: str
) -> tuple[int, int, list[Problem]]:
    keys = [r.key for r in batch]
    now = clock.now()
    held: dict[str, str] = {}
    present: set[str] = set()
    with db.transaction() as conn:
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            held.update(
                (row.email_key, row.reason)
                for row in conn.execute(
                    select(suppressions.c.email_key, suppressions.c.reason).where(
                        db.any_of(suppressions.c.email_key, chunk)
                    )
                )
            )
            present.update(
                conn.execute(
                    select(subscribers.c.email_key).where(db.any_of(subscribers.c.email_key, chunk))
                ).scalars()
            )
        fresh = [r for r in batch if r.key not in held and r.key not in present]
        if fresh:
            _insert_many(conn, db, fresh, source, now)
    skipped = [
        Problem(shown, r.line, f"skipped {r.email}: suppressed ({held[r.key]})")
        for r in batch
        if r.key in held
    ]
    existing = sum(1 for r in batch if r.key in present and r.key not in held)
    return len(fresh), existing, skipped


# PostgreSQL: one statement per batch, the columns sent as arrays (half the time and a third
# of the client CPU of an executemany, which still costs one protocol message per row).
_PG_BULK_INSERT = (
    "INSERT INTO subscribers (email, email_key, name, tags, status, source, created_at, "
    "updated_at) SELECT e, k, n, t, %(status)s, %(source)s, %(now)s, %(now)s "
    "FROM unnest(%(e)s::text[], %(k)s::text[], %(n)s::text[], %(t)s::text[]) AS u(e, k, n, t) "
    "WHERE true ON CONFLICT DO NOTHING"
)


def _insert_many(
    conn: Connection, db: Database, rows: list[_CsvRow], source: str, now: datetime
) -> None:
    """Insert new subscribers in bulk, ON CONFLICT covering a concurrent writer.

    SQLite gets one executemany straight to the driver: the statement is still compiled by
    SQLAlchemy, only its per-row parameter processing (which doubled the time) is skipped.
    """
    active = str(SubscriberStatus.ACTIVE)
    if db.dialect == "postgresql":
        conn.exec_driver_sql(
            _PG_BULK_INSERT,
            {
                "status": active,
                "source": source,
                "now": now,
                "e": [r.email for r in rows],
                "k": [r.key for r in rows],
                "n": [r.name for r in rows],
                "t": [r.tags for r in rows],
            },
        )
        return
    columns = ["email", "email_key", "name", "tags", "status", "source", "created_at", "updated_at"]
    compiled = db.insert_ignore(subscribers).compile(dialect=conn.dialect, column_keys=columns)
    to_db = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)
    stamp = to_db(now) if to_db else now
    params = [
        {
            "email": r.email,
            "email_key": r.key,
            "name": r.name,
            "tags": r.tags,
            "status": active,
            "source": source,
            "created_at": stamp,
            "updated_at": stamp,
        }
        for r in rows
    ]
    order = compiled.positiontup or columns  # SQLite's paramstyle is positional (qmark)
    conn.exec_driver_sql(str(compiled), [tuple(p[k] for k in order) for p in params])


def _read_csv(path: Path) -> Iterator[_CsvRow | Problem]:
    """Parse the file, yielding good rows and one Problem per bad row (start line numbers)."""
    shown = str(path)
    try:
        # surrogateescape: a stray non-UTF-8 byte spoils its row only, not the whole file.
        f = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115
    except OSError as exc:
        raise SubscriberError(f"cannot read {shown}: {exc.strerror}") from exc
    with f:
        reader = csv.reader(f, strict=True)
        header: tuple[dict[str, int], int] | None = None  # known column → index; width
        line = 0
        while True:
            start = line + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                line = reader.line_num
                yield Problem(shown, start, f"malformed CSV: {exc}")
                continue
            line = reader.line_num
            if not fields or fields == [""]:
                continue  # blank line
            if header is None:
                header = _header(fields, shown, start)
                continue
            yield _row(fields, header, shown, start)
    if header is None:
        raise SubscriberError(
            f"{shown} is empty", hint="the first line must be a header: email,name,tags"
        )


def _header(fields: list[str], shown: str, line: int) -> tuple[dict[str, int], int]:
    names = [f.strip().lower() for f in fields]
    if "email" not in names or len(set(names)) != len(names):
        # repr() for names a terminal would not show as they are (line breaks, escapes, NULs).
        found = ", ".join(n if n.isprintable() else repr(n) for n in names)
        raise SubscriberError(
            f"{shown}:{line}: the header row must name each column once, "
            f"including 'email' (found: {found})",
            hint="the first line must be a header: email,name,tags",
        )
    return {n: i for i, n in enumerate(names) if n in CSV_COLUMNS}, len(names)


def _row(
    fields: list[str], header: tuple[dict[str, int], int], shown: str, line: int
) -> _CsvRow | Problem:
    columns, width = header
    if len(fields) > width and any(f.strip() for f in fields[width:]):
        return Problem(
            shown,
            line,
            f"{len(fields)} fields but the header has {width} "
            "(quote a field that contains a comma)",
        )
    joined = "".join(fields)
    if not joined.isascii():
        try:  # surrogateescape turned undecodable bytes into lone surrogates
            joined.encode("utf-8")
        except UnicodeEncodeError:
            return Problem(shown, line, "not valid UTF-8")

    def field(name: str) -> str:
        index = columns.get(name)
        return fields[index] if index is not None and index < len(fields) else ""

    email = field("email").strip()
    if not email:
        return Problem(shown, line, "missing email address")
    try:
        address = check_address(email)
        name = check_name(field("name"))
        tags = ",".join(parse_tags(field("tags")))
    except SubscriberError as exc:
        return Problem(shown, line, exc.message)
    return _CsvRow(line=line, email=address.email, key=address.key, name=name, tags=tags)
