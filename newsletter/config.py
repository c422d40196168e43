"""config.toml → frozen dataclasses; every problem is reported at once, each naming its key."""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError, Problem, located
from newsletter.schedule.cron import cron_trigger

CONFIG_NAME = "config.toml"
ENV_PREFIX = "NEWSLETTER_"
GROUP_BY = ("week", "month", "issue", "explicit")
SECTION_BY = ("none", "tag", "section")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PER = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


@dataclass(frozen=True)
class NewsletterSection:
    title: str
    base_url: str
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    author: str = ""
    email: str = ""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class EditionsSection:
    group_by: str = "week"
    title: str = "{newsletter} #{number}"
    subject: str = "{title}"
    preheader: str = ""
    section_by: str = "none"
    section_order: tuple[str, ...] = ()
    week_start: str = "monday"
    notes_dir: str = "editions"
    lock_file: str = "editions.lock"


@dataclass(frozen=True)
class EmailSection:
    sender: str = ""  # the From header; [email] from
    reply_to: str = ""
    list_id: str = ""
    unsubscribe_url: str = ""  # prefix; the token is appended
    unsubscribe_mailto: str = ""
    secret_env: str = "NEWSLETTER_SECRET"


@dataclass(frozen=True)
class BuildSection:
    out: str = "public"
    feed_limit: int = 50
    issues_dir: str = "issues"
    templates_dir: str = "templates"


@dataclass(frozen=True)
class StateSection:
    dir: str = ".newsletter"
    database: str = ""  # empty: sqlite file in dir
    busy_timeout: float = 5.0  # seconds to wait for a database locked by another process


@dataclass(frozen=True)
class SenderSection:
    kind: str = "outbox"
    rate: float | None = None  # messages per second
    hourly_cap: int | None = None
    daily_cap: int | None = None
    concurrency: int = 4
    batch_size: int = 100
    max_attempts: int = 5
    max_consecutive_errors: int = 50
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # [sender.<kind>]


@dataclass(frozen=True)
class ScheduleSection:
    cron: str = ""
    misfire_grace: float = 6 * 3600.0  # seconds


@dataclass(frozen=True)
class PublishSection:
    command: str = ""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; paths are resolved against ``root``."""

    root: Path
    newsletter: NewsletterSection
    editions: EditionsSection = EditionsSection()
    email: EmailSection = EmailSection()
    build: BuildSection = BuildSection()
    state: StateSection = StateSection()
    sender: SenderSection = SenderSection()
    schedule: ScheduleSection = ScheduleSection()
    publish: PublishSection = PublishSection()
    strings: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    digest: str = ""  # sha256 of the effective settings: part of every cache key

    @property
    def path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def base_url(self) -> str:
        return self.newsletter.base_url.rstrip("/") + "/"

    @property
    def state_dir(self) -> Path:
        return self.root / self.state.dir

    @property
    def database_url(self) -> str:
        if self.state.database:
            db = self.state.database
            if "://" not in db:  # a bare path means a SQLite file
                return f"sqlite:///{(self.root / db).as_posix()}"
            return db
        return f"sqlite:///{(self.state_dir / 'state.db').as_posix()}"

    @property
    def out_dir(self) -> Path:
        return self.root / self.build.out

    @property
    def unsubscribe_prefix(self) -> str:
        return self.email.unsubscribe_url or self.base_url + "unsubscribe/"

    @property
    def from_header(self) -> str:
        if self.email.sender:
            return self.email.sender
        return f"{self.newsletter.title} <{self.newsletter.email or 'newsletter@localhost'}>"

    @property
    def list_id(self) -> str:
        if self.email.list_id:
            return self.email.list_id
        from urllib.parse import urlsplit

        host = urlsplit(self.newsletter.base_url).hostname or "localhost"
        return f"{self.newsletter.title} <newsletter.{host}>"


class _Reader:
    """Pulls typed values out of one table, recording problems instead of raising."""

    def __init__(self, text: str, path: str, problems: list[Problem]) -> None:
        self.text_lines = text.splitlines()
        self.path = path
        self.problems = problems

    def line_of(self, section: str, key: str | None = None) -> int | None:
        header = re.compile(r"^\s*\[\s*" + re.escape(section) + r"\s*\]\s*(#.*)?$")
        start = None
        for n, line in enumerate(self.text_lines, 1):
            if start is None and header.match(line):
                start = n
                if key is None:
                    return n
            elif start is not None:
                if re.match(r"^\s*\[", line):
                    break
                if key and re.match(r"^\s*" + re.escape(key) + r"\s*=", line):
                    return n
        return start

    def problem(self, section: str, key: str | None, message: str) -> None:
        name = f"[{section}] {key}" if key else f"[{section}]"
        self.problems.append(Problem(self.path, self.line_of(section, key), f"{name}: {message}"))

    def table(
        self,
        data: Mapping[str, Any],
        section: str,
        known: tuple[str, ...],
        free: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        value = data.get(section, {})
        if not isinstance(value, dict):
            self.problem(section, None, "must be a table")
            return {}
        for key in sorted(value):
            if key not in known and key not in free:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.problem(section, key, f"unknown key{hint}")
        return value

    def str_(
        self,
        t: Mapping[str, Any],
        section: str,
        key: str,
        default: str,
        choices: tuple[str, ...] = (),
        required: bool = False,
    ) -> str:
        if key not in t:
            if required:
                self.problem(section, key, "is required")
            return default
        value = t[key]
        if not isinstance(value, str):
            self.problem(section, key, f"must be a string, not {type(value).__name__}")
            return default
        if choices and value not in choices:
            self.problem(section, key, f"must be one of {', '.join(choices)}; got {value!r}")
            return default
        if ("\r" in value or "\n" in value) and key not in ("description", "command"):
            self.problem(section, key, "must not contain line breaks")
            return default
        return value

    def int_(
        self, t: Mapping[str, Any], section: str, key: str, default: int | None, minimum: int = 0
    ) -> int | None:
        if key not in t:
            return default
        value = t[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(section, key, f"must be a whole number ≥ {minimum}")
            return default
        return value

    def duration(self, t: Mapping[str, Any], section: str, key: str, default: float) -> float:
        if key not in t:
            return default
        value = t[key]
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        m = _DURATION.match(value) if isinstance(value, str) else None
        if not m:
            self.problem(section, key, 'must be a duration such as "30m", "6h" or "1d"')
            return default
        return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]

    def rate(self, t: Mapping[str, Any], section: str, key: str) -> float | None:
        if key not in t:
            return None
        value = t[key]
        m = _RATE.match(value) if isinstance(value, str) else None
        if not m or float(m.group(1)) <= 0:
            self.problem(section, key, 'must be a rate such as "14/s" or "3000/h"')
            return None
        return float(m.group(1)) / _PER[m.group(2)]


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Apply NEWSLETTER_<SECTION>__<KEY>[__<KEY>] variables (values parsed as TOML if possible)."""
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if len(parts) < 2 or not all(parts):
            continue
        raw = environ[name]
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = value


def toml_problem(rel: str, text: str, exc: tomllib.TOMLDecodeError) -> Problem:
    """A TOML syntax error as ``rel:LINE: invalid TOML: …`` (for config.toml and editions.lock)."""
    m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
    msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
    # "(at end of document)": an unfinished last line (e.g. a lone "[") is where to look.
    line = int(m.group(1)) if m else text.rstrip("\n").count("\n") + 1
    return Problem(rel, line, f"invalid TOML: {msg}")


def load_config(root: Path | str = ".", environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate ``root/config.toml`` with environment overrides applied."""
    root = Path(root).resolve()
    path = root / CONFIG_NAME
    rel = CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{rel}: not found in {root}",
            hint="run `newsletter init DIR` to create a project, or cd into one",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{rel}: cannot be read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{rel}: invalid TOML", problems=[toml_problem(rel, text, exc)]) from exc
    return parse_config(data, root, text=text, environ=os.environ if environ is None else environ)


def parse_config(
    data: dict[str, Any], root: Path, *, text: str = "", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate an already-parsed config table; raises ConfigError listing every problem."""
    import hashlib
    import json

    _env_overrides(data, environ or {})
    problems: list[Problem] = []
    r = _Reader(text, CONFIG_NAME, problems)
    known_sections = (
        "newsletter",
        "editions",
        "email",
        "build",
        "state",
        "sender",
        "schedule",
        "publish",
        "strings",
        "serve",
        "preview",
    )
    for name in sorted(data):
        if name not in known_sections:
            problems.append(Problem(CONFIG_NAME, r.line_of(name), f"[{name}]: unknown section"))

    t = r.table(
        data,
        "newsletter",
        ("title", "base_url", "description", "language", "timezone", "author", "email"),
    )
    base_url = r.str_(t, "newsletter", "base_url", "http://localhost/", required=True)
    if "base_url" in t and not re.match(r"^https?://[^/\s]+", base_url):
        r.problem("newsletter", "base_url", f"must be an absolute http(s) URL; got {base_url!r}")
    tz = r.str_(t, "newsletter", "timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America" is a folder
        r.problem("newsletter", "timezone", f"unknown IANA time zone {tz!r}")
        tz = "UTC"
    language = r.str_(t, "newsletter", "language", "en")
    try:
        from babel import Locale, UnknownLocaleError

        Locale.parse(language, sep="-")
    except (UnknownLocaleError, ValueError):
        r.problem(
            "newsletter", "language", f"unknown language tag {language!r} (use BCP 47: en, zh-CN)"
        )
        language = "en"
    newsletter = NewsletterSection(
        title=r.str_(t, "newsletter", "title", "Newsletter", required=True),
        base_url=base_url,
        description=r.str_(t, "newsletter", "description", ""),
        language=language,
        timezone=tz,
        author=r.str_(t, "newsletter", "author", ""),
        email=r.str_(t, "newsletter", "email", ""),
    )

    t = r.table(
        data,
        "editions",
        (
            "group_by",
            "title",
            "subject",
            "preheader",
            "section_by",
            "section_order",
            "week_start",
            "notes_dir",
            "lock_file",
        ),
    )
    order = t.get("section_order", [])
    if not isinstance(order, list) or not all(isinstance(s, str) for s in order):
        r.problem("editions", "section_order", "must be a list of strings")
        order = []
    editions = EditionsSection(
        group_by=r.str_(t, "editions", "group_by", "week", GROUP_BY),
        title=r.str_(t, "editions", "title", EditionsSection.title),
        subject=r.str_(t, "editions", "subject", EditionsSection.subject),
        preheader=r.str_(t, "editions", "preheader", ""),
        section_by=r.str_(t, "editions", "section_by", "none", SECTION_BY),
        section_order=tuple(order),
        week_start=r.str_(t, "editions", "week_start", "monday", WEEKDAYS),
        notes_dir=r.str_(t, "editions", "notes_dir", "editions"),
        lock_file=r.str_(t, "editions", "lock_file", "editions.lock"),
    )
    _check_patterns(editions, r)

    t = r.table(
        data,
        "email",
        ("from", "reply_to", "list_id", "unsubscribe_url", "unsubscribe_mailto", "secret_env"),
    )
    email = EmailSection(
        sender=r.str_(t, "email", "from", ""),
        reply_to=r.str_(t, "email", "reply_to", ""),
        list_id=r.str_(t, "email", "list_id", ""),
        unsubscribe_url=r.str_(t, "email", "unsubscribe_url", ""),
        unsubscribe_mailto=r.str_(t, "email", "unsubscribe_mailto", ""),
        secret_env=r.str_(t, "email", "secret_env", "NEWSLETTER_SECRET"),
    )

    t = r.table(data, "build", ("out", "feed_limit", "issues_dir", "templates_dir"))
    build = BuildSection(
        out=r.str_(t, "build", "out", "public"),
        feed_limit=r.int_(t, "build", "feed_limit", 50, minimum=1) or 50,
        issues_dir=r.str_(t, "build", "issues_dir", "issues"),
        templates_dir=r.str_(t, "build", "templates_dir", "templates"),
    )
    for section, key, value in (
        ("editions", "notes_dir", editions.notes_dir),
        ("editions", "lock_file", editions.lock_file),
        ("build", "out", build.out),
        ("build", "issues_dir", build.issues_dir),
    ):
        if not value.strip():  # "" is the project folder itself
            r.problem(section, key, "must not be empty: it names a file or folder")

    t = r.table(data, "state", ("dir", "database", "busy_timeout"))
    state = StateSection(
        dir=r.str_(t, "state", "dir", ".newsletter"),
        database=r.str_(t, "state", "database", ""),
        busy_timeout=r.duration(t, "state", "busy_timeout", 5.0),
    )

    sender = _sender(data, r)

    t = r.table(data, "schedule", ("cron", "misfire_grace"))
    cron = r.str_(t, "schedule", "cron", "")
    if cron:
        try:
            cron_trigger(cron, newsletter.tz)
        except ValueError as exc:
            r.problem("schedule", "cron", str(exc))
    schedule = ScheduleSection(
        cron=cron, misfire_grace=r.duration(t, "schedule", "misfire_grace", 6 * 3600.0)
    )

    t = r.table(data, "publish", ("command",))
    publish = PublishSection(command=r.str_(t, "publish", "command", ""))

    strings = data.get("strings", {})
    if not isinstance(strings, dict) or not all(
        isinstance(v, dict) and all(isinstance(s, str) for s in v.values())
        for v in strings.values()
    ):
        r.problem("strings", None, "must hold one table of strings per language")
        strings = {}
    for name in ("serve", "preview"):
        r.table(
            data,
            name,
            ("host", "port", "rate_limit", "trusted_proxies", "address_limit", "public_url"),
        )

    if problems:
        raise located(problems, CONFIG_NAME, ConfigError)
    digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
    return Config(
        root=root,
        newsletter=newsletter,
        editions=editions,
        email=email,
        build=build,
        state=state,
        sender=sender,
        schedule=schedule,
        publish=publish,
        strings=strings,
        digest=digest,
    )


def _sender(data: Mapping[str, Any], r: _Reader) -> SenderSection:
    from newsletter.senders import known_senders

    kinds = known_senders()
    t = r.table(
        data,
        "sender",
        (
            "kind",
            "rate",
            "hourly_cap",
            "daily_cap",
            "concurrency",
            "batch_size",
            "max_attempts",
            "max_consecutive_errors",
        ),
        free=kinds,
    )
    options = {k: v for k, v in t.items() if k in kinds and isinstance(v, dict)}
    return SenderSection(
        kind=r.str_(t, "sender", "kind", "outbox", kinds),
        rate=r.rate(t, "sender", "rate"),
        hourly_cap=r.int_(t, "sender", "hourly_cap", None, minimum=1),
        daily_cap=r.int_(t, "sender", "daily_cap", None, minimum=1),
        concurrency=r.int_(t, "sender", "concurrency", 4, minimum=1) or 4,
        batch_size=r.int_(t, "sender", "batch_size", 100, minimum=1) or 100,
        max_attempts=r.int_(t, "sender", "max_attempts", 5, minimum=1) or 5,
        max_consecutive_errors=r.int_(t, "sender", "max_consecutive_errors", 50, minimum=1) or 50,
        options=options,
    )


def _check_patterns(editions: EditionsSection, r: _Reader) -> None:
    """Format the title patterns once with sample values so typos surface now, not at send time."""
    from datetime import date

    sample = {
        "number": 1,
        "newsletter": "N",
        "start": date(2024, 1, 1),
        "end": date(2024, 1, 7),
        "key": "2024-W01",
        "year": 2024,
        "month": 1,
        "week": 1,
        "count": 1,
        "title": "T",
    }
    for key in ("title", "subject", "preheader"):
        pattern = getattr(editions, key)
        try:
            pattern.format(**sample)
        except (KeyError, ValueError, IndexError, AttributeError, TypeError, MemoryError) as exc:
            # TypeError: "{number[0]}"; MemoryError: a width such as "{number:999999999999}"
            names = ", ".join("{" + k + "}" for k in sample)
            r.problem("editions", key, f"bad pattern {pattern!r} ({exc}); fields: {names}")
