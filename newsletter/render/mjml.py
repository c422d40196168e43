"""The mrml adapter: MJML → email HTML, with mrml's bare OSErrors turned into located errors."""

from __future__ import annotations

import re
import xml.parsers.expat

import mrml

from newsletter.errors import Problem, TemplateError

_POSITION = re.compile(r"(?:position|offset|at)\s+(\d+)")


def compile_mjml(source: str, template: str, what: str) -> str:
    """Compile MJML to HTML; on failure name the template and the generated MJML line."""
    try:
        return str(mrml.to_html(source).content)
    except OSError as exc:
        message = str(exc) or exc.__class__.__name__
        line, snippet = _locate(source, message)
        detail = f"MJML error: {message}"
        if line is not None:
            detail += f" (generated MJML line {line}: {snippet!r})"
        raise TemplateError(
            f"{template}: {detail} while rendering {what}",
            problems=[Problem(template, None, f"{detail} while rendering {what}")],
            hint="HTML inside <mj-text> must be well-formed: close every tag",
        ) from exc


def _locate(source: str, message: str) -> tuple[int | None, str]:
    """Find the generated line: from a byte offset in the message, else by an XML parse."""
    lines = source.splitlines()
    m = _POSITION.search(message)
    if m:
        offset = int(m.group(1))
        # mrml reports UTF-8 *byte* offsets; count newlines in the bytes before it.
        line = source.encode("utf-8")[:offset].count(b"\n") + 1
        return line, lines[line - 1].strip()[:120] if 0 < line <= len(lines) else ""
    parser = xml.parsers.expat.ParserCreate()
    parser.UseForeignDTD(True)  # tolerate HTML entities such as &nbsp; instead of failing on them
    try:
        parser.Parse(source, True)
    except xml.parsers.expat.ExpatError as err:
        line = err.lineno
        return line, lines[line - 1].strip()[:120] if 0 < line <= len(lines) else ""
    return None, ""
