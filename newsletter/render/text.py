"""HTML → readable plain text for the text/plain part (links kept as "text (url)").

The input is the loader's sanitized, well-formed HTML (a small tag allowlist), so a regex
tokenizer is enough, and it is several times faster than html.parser on every issue body.
"""

from __future__ import annotations

import html
import re

_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>|<!--.*?-->", re.S)
_ATTR = re.compile(r'([a-zA-Z_:-]+)\s*=\s*(?:"([^"]*)"|\'([^\']*)\'|([^\s>]+))')
_BLOCK = frozenset(
    {
        "p",
        "div",
        "section",
        "blockquote",
        "pre",
        "table",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "figure",
    }
)
_SPACE = re.compile(r"\s+")


def _attrs(raw: str) -> dict[str, str]:
    return {
        m.group(1).lower(): html.unescape(m.group(2) or m.group(3) or m.group(4) or "")
        for m in _ATTR.finditer(raw)
    }


class _Writer:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.links: list[tuple[str | None, int]] = []  # (href, index in out where text starts)
        self.lists: list[list[int]] = []  # per open list: [is_ordered, counter]
        self.pre = 0
        self.cells = 0  # cells seen in the current table row

    def text(self, data: str) -> None:
        data = html.unescape(data)
        self.out.append(data if self.pre else _SPACE.sub(" ", data))

    def start(self, tag: str, raw: str) -> None:
        if tag in _BLOCK:
            self.out.append("\n\n")
        if tag in ("h1", "h2", "h3", "h4"):
            self.out.append("#" * int(tag[1]) + " ")
        elif tag in ("ul", "ol"):
            self.lists.append([tag == "ol", 0])
        elif tag == "li":
            depth = max(len(self.lists) - 1, 0)
            marker = "-"
            if self.lists and self.lists[-1][0]:
                self.lists[-1][1] += 1
                marker = f"{self.lists[-1][1]}."
            self.out.append("\n" + "  " * depth + marker + " ")
        elif tag == "br":
            self.out.append("\n")
        elif tag == "pre":
            self.pre += 1
        elif tag == "a":
            self.links.append((_attrs(raw).get("href"), len(self.out)))
        elif tag == "img":
            alt = _attrs(raw).get("alt")
            if alt:
                self.out.append(f"[{alt}]")
        elif tag == "tr":
            self.cells = 0
            self.out.append("\n")
        elif tag in ("td", "th"):
            if self.cells:
                self.out.append(" | ")
            self.cells += 1
        elif tag == "hr":
            self.out.append("----")
        elif tag == "blockquote":
            self.out.append("> ")

    def end(self, tag: str) -> None:
        if tag in _BLOCK:
            self.out.append("\n\n")
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.out[start:])
            if (
                href
                and href.startswith(("http://", "https://", "mailto:"))
                and href != text
                and "#fnref" not in href
            ):
                self.out.append(f" ({href})")


def html_to_text(source: str) -> str:
    w = _Writer()
    pos = 0
    for m in _TOKEN.finditer(source):
        if m.start() > pos:
            w.text(source[pos : m.start()])
        pos = m.end()
        tag = m.group(2)
        if tag is None:
            continue  # a comment
        tag = tag.lower()
        if m.group(1):
            w.end(tag)
        else:
            w.start(tag, m.group(3))
            if m.group(3).rstrip().endswith("/") and tag not in ("br", "img", "hr"):
                w.end(tag)
    if pos < len(source):
        w.text(source[pos:])
    lines = [line.rstrip() for line in "".join(w.out).splitlines()]
    text = "\n".join(line.lstrip() if not line.startswith("  ") else line for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
