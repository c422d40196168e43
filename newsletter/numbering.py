"""Stable edition numbers: editions.lock records every number ever published."""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from newsletter.config import toml_problem
from newsletter.errors import ContentError, Problem, PublishError

_HEADER = (
    "# Edition numbers already published: key = number. Written by `newsletter build`;\n"
    "# commit it with your issues so numbers never change. Edit only to renumber on purpose.\n"
)


def read_lock(path: Path, rel: str) -> dict[str, int]:
    """Read the lock file; a missing file is an empty lock."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ContentError(f"{rel}: cannot be read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ContentError(f"{rel}: invalid TOML", problems=[toml_problem(rel, text, exc)]) from exc
    numbers = data.get("numbers", {})
    problems = [
        Problem(rel, None, f"numbers.{k}: must be a positive whole number")
        for k, v in sorted(numbers.items())
        if isinstance(v, bool) or not isinstance(v, int) or v < 1
    ]
    seen: dict[int, str] = {}
    for key, value in sorted(numbers.items()):
        if isinstance(value, int) and value in seen:
            problems.append(
                Problem(rel, None, f"number {value} is used by both {seen[value]!r} and {key!r}")
            )
        seen[value] = key
    if problems:
        raise ContentError(f"{rel}: invalid", problems=problems)
    return {str(k): int(v) for k, v in numbers.items()}


def assign(
    keys_in_order: Iterable[str], lock: Mapping[str, int], persist: Iterable[str]
) -> tuple[dict[str, int], dict[str, int]]:
    """Number editions: locked keys keep their number; new keys continue after the highest.

    Returns (numbers for every key, the lock updated with the keys in ``persist``). Keys not
    persisted (open or draft editions) get provisional numbers that a later build may change.
    """
    persist_set = set(persist)
    new_lock = dict(lock)
    numbers: dict[str, int] = {}
    ordered = list(keys_in_order)
    # Published keys first so provisional editions never take a number a real one needs.
    first = [k for k in ordered if k in persist_set]
    for key in first + [k for k in ordered if k not in persist_set]:
        if key in new_lock:
            numbers[key] = new_lock[key]
            continue
        taken = max([*new_lock.values(), *numbers.values(), 0])
        numbers[key] = taken + 1
        if key in persist_set:
            new_lock[key] = numbers[key]
    return numbers, new_lock


def write_lock(path: Path, numbers: Mapping[str, int]) -> None:
    """Write the lock atomically, sorted by number so diffs read like a history."""
    lines = [_HEADER, "[numbers]\n"]
    for key, value in sorted(numbers.items(), key=lambda kv: (kv[1], kv[0])):
        lines.append(f'"{key}" = {value}\n')
    data = "".join(lines).encode("utf-8")
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".editions.", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk or a read-only project: a user's problem
            raise PublishError(
                f"{path}: cannot write the edition numbers: {exc.strerror or exc}",
                hint="fix this and build again before adding or removing issues, "
                "so editions.lock records the numbers just published",
            ) from exc
        raise
