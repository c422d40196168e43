"""Front matter: split it from the body, parse it as YAML without the 1.1 traps, read typed keys."""

from __future__ import annotations

import bisect
import difflib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from newsletter.errors import Problem

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml: 10x slower, same result
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

_OPEN = re.compile(r"---[ \t]*\r?\n")
_CLOSE = re.compile(r"^---[ \t]*\r?$", re.MULTILINE)
# Anything that would split an email header or break XML: a "single line" must have none of it.
_NOT_ONE_LINE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# YAML's own timestamp form allows a space before the offset ("2024-05-01 09:30:00 +08:00").
_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?"
    r"(?: ?(?:[Zz]|[+-]\d{2}(?::?\d{2})?))?"
)
_NULL_TAG = "tag:yaml.org,2002:null"
# libyaml's composer recurses in C: ~100,000 nested "[" crash the interpreter. Nesting takes at
# least one character per level, so only front matter this long needs the (cheap) depth check.
MAX_DEPTH = 100
_DEPTH_CHECK_SIZE = 2 * MAX_DEPTH


class _Loader(_BaseLoader):
    """A safe loader with YAML 1.2-style scalars: only true/false are booleans, no timestamps,
    no sexagesimal or octal numbers, so ``no``, ``1:20`` and ``2024-01-01`` stay strings."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML's class-level registry


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$", re.IGNORECASE), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?[0-9]+[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Loader.add_implicit_resolver(
    _NULL_TAG, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


def _may_nest_deeply(text: str) -> bool:
    """Cheap necessary condition for _too_deep: every nesting level needs one of these marks.

    Flow collections open with [ or {, block sequences with -, complex keys with ?, block
    mappings with a new line; fewer marks than MAX_DEPTH cannot nest that deep, so the full
    event parse (a third of a typical file's load time) is skipped for ordinary front matter.
    """
    marks = sum(text.count(c) for c in "[{-?\n")
    return marks > MAX_DEPTH


def _too_deep(text: str) -> bool:
    """True if collections nest deeper than MAX_DEPTH (the event parser does not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    return True
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        # PyYAML >= 6.0.4 refuses deep flow nesting itself, in the scanner, before the events
        # show the depth; it is the same mistake, so it gets the same message.
        return "nesting depth" in (exc.problem or "")
    except yaml.YAMLError:
        return False  # composing stops at the same error, before nesting any deeper
    return False


def decode(data: bytes, path: str, problems: list[Problem]) -> str | None:
    """Strict UTF-8 (a leading BOM is dropped); a bad byte is reported on its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.append(
            Problem(path, line, f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8")
        )
        return None
    return text[1:] if text.startswith("\ufeff") else text


def is_single_line(value: str) -> bool:
    """True if ``value`` can go in an email header: no line breaks or control characters."""
    return _NOT_ONE_LINE.search(value) is None


@dataclass(frozen=True, slots=True)
class Split:
    """A file cut in two: ``yaml`` is None when the file has no front matter."""

    yaml: str | None
    yaml_line: int  # file line of the first YAML line
    body: str
    body_line: int  # file line where the body starts


def split(text: str, path: str, problems: list[Problem], *, required: bool = True) -> Split | None:
    """Cut the ``---`` fenced front matter off the top of ``text``."""
    opening = _OPEN.match(text)
    if opening is None:
        if required:
            problems.append(
                Problem(
                    path,
                    1,
                    "missing front matter: the file must start with a "
                    "'---' line, then title: and date:, then '---'",
                )
            )
            return None
        return Split(None, 1, text, 1)
    closing = _CLOSE.search(text, opening.end())
    if closing is None:
        problems.append(Problem(path, 1, "front matter is not closed: add a '---' line after it"))
        return None
    body_start = closing.end() + 1 if closing.end() < len(text) else closing.end()
    return Split(
        text[opening.end() : closing.start()],
        2,
        text[body_start:],
        text.count("\n", 0, body_start) + 1,
    )


class FrontMatter:
    """The top-level keys of one file's front matter, read into typed values.

    Every reader records a Problem (at the key's line) instead of raising, so one pass over a
    file reports everything wrong with it.
    """

    def __init__(self, path: str, problems: list[Problem], start_line: int) -> None:
        self.path = path
        self.problems = problems
        self.start_line = start_line  # where "missing key" problems point: the opening ---
        self.nodes: dict[str, Node] = {}
        self.lines: dict[str, int] = {}
        self._offset = 0
        self._newlines: list[int] = []

    @classmethod
    def parse(cls, part: Split, path: str, problems: list[Problem]) -> FrontMatter | None:
        """Parse ``part.yaml``; None (with problems recorded) if it is not a YAML mapping."""
        fm = cls(path, problems, max(part.yaml_line - 1, 1))
        if part.yaml is None:
            return fm
        fm._offset = part.yaml_line
        # Marks count NEL and U+2028 as line breaks (YAML 1.1); editors and our line numbers
        # don't, so lines are computed from character indexes instead of mark.line.
        fm._newlines = [m.start() for m in re.finditer("\n", part.yaml)]
        before = len(problems)
        root = fm._compose(part.yaml)
        if len(problems) > before:
            return None
        if root is None:
            return fm  # empty front matter: every key is missing
        if not isinstance(root, MappingNode):
            fm._problem(root, "front matter must be a mapping of keys (title: …, date: …)")
            return None
        for key_node, value_node in root.value:
            if not isinstance(key_node, ScalarNode) or not key_node.value:
                fm._problem(key_node, "keys must be plain names")
                continue
            key, line = key_node.value, fm.line_of(key_node)
            if key in fm.nodes:
                fm._problem(key_node, f"duplicate key {key!r} (first set on line {fm.lines[key]})")
                continue
            fm.nodes[key], fm.lines[key] = value_node, line
        return fm  # a duplicate key is reported, and the rest is still checked

    def _compose(self, text: str) -> Node | None:
        if len(text) > _DEPTH_CHECK_SIZE and _may_nest_deeply(text) and _too_deep(text):
            self.problems.append(
                Problem(
                    self.path, self._offset, f"front matter nests more than {MAX_DEPTH} levels deep"
                )
            )
            return None
        try:
            loader = _Loader(text)
        except yaml.YAMLError as exc:  # the pure-Python reader rejects bad characters up front
            self._yaml_problem(exc)
            return None
        try:
            return loader.get_single_node()
        except yaml.YAMLError as exc:
            self._yaml_problem(exc)
            return None
        except RecursionError:
            self.problems.append(Problem(self.path, self._offset, "front matter nests too deeply"))
            return None
        finally:
            loader.dispose()

    def _yaml_problem(self, exc: yaml.YAMLError) -> None:
        line = self._offset
        if isinstance(exc, yaml.MarkedYAMLError):
            if exc.problem_mark is not None:
                line = self._line_at(exc.problem_mark.index)
            message = exc.problem or "syntax error"
            if exc.context:
                where = ""
                if exc.context_mark is not None:
                    where = f" started on line {self._line_at(exc.context_mark.index)}"
                message += f" ({exc.context}{where})"
        elif isinstance(exc, yaml.reader.ReaderError):
            line = self._line_at(exc.position)
            message = f"character U+{exc.character:04X} is not allowed here"
        else:  # pragma: no cover - PyYAML raises only the two kinds above while composing
            message = str(exc)
        self.problems.append(Problem(self.path, line, f"invalid YAML: {message}"))

    def _line_at(self, index: int) -> int:
        return self._offset + bisect.bisect_left(self._newlines, max(index, 0))

    def line_of(self, node: Node) -> int:
        """The file line where ``node`` starts."""
        return self._line_at(node.start_mark.index)

    def line(self, key: str) -> int:
        """The line of ``key``, or of the front matter's start when the key is absent."""
        return self.lines.get(key, self.start_line)

    def _problem(self, node: Node, message: str) -> None:
        self.problems.append(Problem(self.path, self.line_of(node), message))

    def missing(self, key: str) -> None:
        """Record that a required key is absent or empty, suggesting a close misspelling."""
        if key in self.nodes:
            self._problem(self.nodes[key], f"{key}: must not be empty")
            return
        close = difflib.get_close_matches(key, list(self.nodes), n=1, cutoff=0.75)
        hint = f" (found {close[0]!r}: a typo?)" if close else ""
        self.problems.append(Problem(self.path, self.start_line, f"{key}: is required{hint}"))

    def _absent(self, key: str) -> bool:
        """True if ``key`` is missing or null (``key:``, ``key: ~``): both mean "not set"."""
        node = self.nodes.get(key)
        return node is None or (isinstance(node, ScalarNode) and node.tag == _NULL_TAG)

    def _scalar(self, key: str) -> ScalarNode | None:
        """The value of ``key`` as a non-null scalar; None if absent or null."""
        if self._absent(key):
            return None
        node = self.nodes[key]
        if not isinstance(node, ScalarNode):
            self._problem(node, f"{key}: must be a single value, not a list or mapping")
            return None
        return node

    def text(self, key: str, *, required: bool = False, multiline: bool = False) -> str | None:
        """A string key, taken from the scalar's source text so ``1.10`` stays "1.10"."""
        if self._absent(key):
            if required:
                self.missing(key)
            return None
        node = self._scalar(key)
        if node is None:
            return None
        return self._check_text(node, key, node.value, multiline=multiline)

    def _check_text(self, node: Node, key: str, value: str, *, multiline: bool) -> str | None:
        value = value.strip()
        if not value:
            self._problem(node, f"{key}: must not be empty")
            return None
        if multiline:
            if _NOT_ONE_LINE.search(value.replace("\n", "").replace("\t", "")):
                self._problem(node, f"{key}: must not contain control characters")
                return None
        elif _NOT_ONE_LINE.search(value):
            self._problem(
                node, f"{key}: must be a single line (no line breaks or control characters)"
            )
            return None
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        """A list of strings; a single string is one entry (never split on commas)."""
        if self._absent(key):
            return ()
        node = self.nodes[key]
        items = node.value if isinstance(node, SequenceNode) else [node]
        out: list[str] = []
        for item in items:
            if not isinstance(item, ScalarNode) or item.tag == _NULL_TAG:
                self._problem(item, f"{key}: every entry must be a string")
                continue
            value = self._check_text(item, key, item.value, multiline=False)
            if value is not None and value not in out:
                out.append(value)
        return tuple(out)

    def whole(self, key: str, minimum: int, maximum: int | None = None) -> int | None:
        """A whole number in ``[minimum, maximum]``."""
        node = self._scalar(key)
        if node is None:
            return None
        text = node.value.strip()
        if re.fullmatch(r"\+?[0-9]{1,9}", text):
            number = int(text)
            if number >= minimum and (maximum is None or number <= maximum):
                return number
        upper = f" and ≤ {maximum}" if maximum is not None else ""
        self._problem(node, f"{key}: must be a whole number ≥ {minimum}{upper}, not {text!r}")
        return None

    def flag(self, key: str) -> bool:
        """A boolean: only true/false (any case); ``yes``/``no``/``on`` are refused, not guessed."""
        node = self._scalar(key)
        if node is None:
            return False
        text = str(node.value).strip().lower()
        if text in ("true", "false"):
            return text == "true"
        self._problem(node, f"{key}: must be true or false, not {node.value!r}")
        return False

    def when(self, key: str, tz: ZoneInfo) -> datetime | None:
        """A required date: YYYY-MM-DD or ISO 8601 date-time; naive values are in ``tz``."""
        if self._absent(key):
            self.missing(key)
            return None
        node = self._scalar(key)
        if node is None:
            return None
        text = node.value.strip()
        if not (_DATE.fullmatch(text) or _DATETIME.fullmatch(text)):
            self._problem(
                node,
                f"{key}: expected YYYY-MM-DD or an ISO 8601 date-time such as "
                f"2024-05-01T09:30:00+08:00, not {text!r}",
            )
            return None
        try:
            value = datetime.fromisoformat(
                text.upper().replace("Z", "+00:00").replace(" +", "+").replace(" -", "-")
            )
        except ValueError as exc:
            self._problem(node, f"{key}: invalid date {text!r} ({exc})")
            return None
        return value.replace(tzinfo=tz) if value.tzinfo is None else value.astimezone(tz)

    def value(self, key: str) -> Any:
        """Any key as plain Python data (dict, list, str, int, float, bool, None)."""
        node = self.nodes[key]
        try:
            return SafeConstructor().construct_document(node)
        except (
            yaml.YAMLError,
            ValueError,
            TypeError,
            OverflowError,
            RecursionError,
            IndexError,
            KeyError,
            AttributeError,
        ) as exc:
            # Explicit tags (!!int abc, !custom) are the only way construction can fail here.
            reason = getattr(exc, "problem", None) or str(exc)
            self._problem(node, f"{key}: cannot be read: {reason}")
            return None
