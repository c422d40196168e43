"""HTML → readable plain text for the text/plain part (links kept as "text (url)")."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {"p", "div", "section", "blockquote", "pre", "table", "ul", "ol", "h1", "h2", "h3",
          "h4", "h5", "h6", "hr", "figure"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.href: list[str | None] = []
        self.link_text: list[str] = []
        self.lists: list[list[int]] = []  # per open list: [is_ordered, counter]
        self.pre = 0
        self.row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
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
            self.href.append(a.get("href"))
            self.out.append("\0")  # marks where the link text starts
        elif tag == "img" and a.get("alt"):
            self.out.append(f"[{a['alt']}]")
        elif tag == "tr":
            self.row = []
            self.out.append("\n")
        elif tag in ("td", "th") and self.row is not None and self.row:
            self.out.append(" | ")
        elif tag == "hr":
            self.out.append("----")
        elif tag == "blockquote":
            self.out.append("> ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK:
            self.out.append("\n\n")
        if tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag == "pre":
            self.pre = max(self.pre - 1, 0)
        elif tag == "a" and self.href:
            href = self.href.pop()
            joined = "".join(self.out)
            start = joined.rfind("\0")
            text = joined[start + 1:]
            self.out = [joined[:start], text]
            if href and href.startswith(("http://", "https://", "mailto:")) and href != text \
                    and "#fnref" not in href:
                self.out.append(f" ({href})")
        elif tag in ("td", "th") and self.row is not None:
            self.row.append("x")

    def handle_data(self, data: str) -> None:
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out).replace("\0", "")
    lines = [line.rstrip() for line in text.splitlines()]
    text = "\n".join(line.lstrip() if not line.startswith("  ") else line for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
