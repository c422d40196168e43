"""Stage "group": issues → editions by week, month, issue or explicit number, with sections."""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from newsletter import numbering
from newsletter.config import WEEKDAYS, Config
from newsletter.errors import ContentError, Problem, located
from newsletter.i18n import Translator
from newsletter.models import Edition, EditionNote, Issue, Section


@dataclass(frozen=True)
class Grouping:
    """The result of grouping: editions oldest first, and the edition lock to persist."""

    editions: tuple[Edition, ...]
    lock: dict[str, int]
    lock_changed: bool

    def by_number(self, number: int) -> Edition | None:
        return next((e for e in self.editions if e.number == number), None)


def edition_key(issue: Issue, config: Config) -> str:
    """The grouping key of one issue under the configured rule."""
    rule = config.editions.group_by
    day = issue.date.astimezone(config.newsletter.tz).date()
    if rule == "week":
        start = _week_start(day, config)
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    if rule == "month":
        return f"{day:%Y-%m}"
    if rule == "issue":
        return issue.slug
    return str(issue.edition)


def _week_start(day: date, config: Config) -> date:
    first = WEEKDAYS.index(config.editions.week_start)
    return day - timedelta(days=(day.weekday() - first) % 7)


def calendar_period(day: date, config: Config) -> tuple[date, date]:
    """The week or month (per ``group_by``) that contains ``day``: the one calendar rule that
    grouping and the scheduler share. Only for ``group_by`` week or month."""
    if config.editions.group_by == "week":
        start = _week_start(day, config)
        return start, start + timedelta(days=6)
    first = day.replace(day=1)
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def closes_at(end: date, config: Config) -> datetime:
    """When a period ending on ``end`` stops collecting issues: the midnight after it, local."""
    return datetime.combine(end + timedelta(days=1), time(), tzinfo=config.newsletter.tz)


def _period(key: str, issues: Sequence[Issue], config: Config) -> tuple[date, date]:
    days = [i.date.astimezone(config.newsletter.tz).date() for i in issues]
    if config.editions.group_by in ("week", "month"):
        return calendar_period(min(days), config)
    return min(days), max(days)


def group(
    issues: Sequence[Issue],
    config: Config,
    *,
    now: datetime,
    notes: Mapping[str, EditionNote] | None = None,
    drafts: bool = False,
    lock: Mapping[str, int] | None = None,
) -> Grouping:
    """Group issues into editions, numbering them stably against ``lock``.

    Open editions (their week or month has not ended at ``now``) and draft issues are left
    out unless ``drafts``; they never enter the lock, so only published numbers are fixed.
    """
    notes = notes or {}
    problems: list[Problem] = []
    buckets: dict[str, list[Issue]] = defaultdict(list)
    for issue in issues:
        if issue.draft and not drafts:
            continue
        if config.editions.group_by == "explicit" and issue.edition is None:
            problems.append(
                Problem(
                    issue.path,
                    issue.lines.get("title", 1),
                    'edition: required when [editions] group_by = "explicit"',
                )
            )
            continue
        buckets[edition_key(issue, config)].append(issue)
    if problems:
        raise located(problems, "issue files", ContentError)

    spans: dict[str, tuple[date, date]] = {}
    open_keys: set[str] = set()
    by_calendar = config.editions.group_by in ("week", "month")
    for key, members in buckets.items():
        spans[key] = _period(key, members, config)
        if by_calendar and now < closes_at(spans[key][1], config):
            open_keys.add(key)
    if not drafts:
        for key in open_keys:
            del buckets[key]
    ordered = sorted(buckets, key=lambda k: (spans[k][0], max(i.date for i in buckets[k]), k))
    persist = [k for k in ordered if k not in open_keys and not all(i.draft for i in buckets[k])]
    lock = dict(lock or {})
    if config.editions.group_by == "explicit":
        numbers = {k: int(k) for k in ordered}
        new_lock = lock
    else:
        numbers, new_lock = numbering.assign(ordered, lock, persist)

    t = Translator(config.newsletter.language, config.strings)
    editions = [
        _edition(
            key,
            numbers[key],
            sorted(buckets[key], key=lambda i: (i.date, i.slug)),
            spans[key],
            key in open_keys,
            notes.get(key) or notes.get(str(numbers[key])),
            config,
            t,
        )
        for key in ordered
    ]
    editions.sort(key=lambda e: (e.number, e.key))
    return Grouping(tuple(editions), new_lock, new_lock != lock)


def _edition(
    key: str,
    number: int,
    issues: list[Issue],
    span: tuple[date, date],
    is_open: bool,
    note: EditionNote | None,
    config: Config,
    t: Translator,
) -> Edition:
    start, end = span
    fields = {
        "number": number,
        "newsletter": config.newsletter.title,
        "start": start,
        "end": end,
        "key": key,
        "year": start.year,
        "month": start.month,
        "week": start.isocalendar()[1],
        "count": len(issues),
    }
    title = (note.title if note and note.title else None) or config.editions.title.format(**fields)
    fields["title"] = title
    subject = (note.subject if note and note.subject else None) or config.editions.subject.format(
        **fields
    )
    preheader = (
        (note.preheader if note and note.preheader else None)
        or config.editions.preheader.format(**fields)
        or _default_preheader(issues)
    )
    return Edition(
        key=key,
        number=number,
        title=title,
        start=start,
        end=end,
        date=max(i.date for i in issues),
        issues=tuple(issues),
        sections=_sections(issues, config, t),
        subject=subject,
        preheader=preheader,
        intro_html=note.intro_html if note else "",
        is_open=is_open,
        draft=is_open or all(i.draft for i in issues),
        note_path=note.path if note else None,
    )


def _default_preheader(issues: Sequence[Issue]) -> str:
    text = " · ".join(i.title for i in issues)
    return text if len(text) <= 140 else text[:139] + "…"


def _sections(issues: Sequence[Issue], config: Config, t: Translator) -> tuple[Section, ...]:
    rule = config.editions.section_by
    if rule == "none":
        return (Section(None, tuple(issues)),)
    named: dict[str | None, list[Issue]] = defaultdict(list)
    for issue in issues:
        name = (issue.tags[0] if issue.tags else None) if rule == "tag" else issue.section
        named[name].append(issue)
    order = list(config.editions.section_order)
    keys = [k for k in order if k in named]
    keys += sorted(k for k in named if k is not None and k not in order)
    sections = [Section(k, tuple(named[k])) for k in keys]
    if None in named:
        # Untitled issues go last, under a localized "Other" heading when sections exist.
        sections.append(Section(t("other") if sections else None, tuple(named[None])))
    return tuple(sections)


def load_lock(config: Config) -> dict[str, int]:
    return numbering.read_lock(config.root / config.editions.lock_file, config.editions.lock_file)


def save_lock(config: Config, grouping: Grouping) -> None:
    if grouping.lock_changed:
        numbering.write_lock(config.root / config.editions.lock_file, grouping.lock)
