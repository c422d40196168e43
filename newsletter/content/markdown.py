"""Markdown → sanitized, well-formed HTML with absolute URLs, safe for email and the web."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import cmarkgfm
import nh3
from cmarkgfm.cmark import Options

# The GitHub extensions minus "tagfilter": nh3 does that job properly (it drops <script> and
# <style> with their content), while tagfilter would leave "<script>…" visible as text.
_EXTENSIONS = ("table", "autolink", "strikethrough", "tasklist")
_OPTIONS = Options.CMARK_OPT_FOOTNOTES | Options.CMARK_OPT_UNSAFE

SCHEMES = frozenset({"http", "https", "mailto"})
_TAGS = frozenset(
    {
        "p",
        "a",
        "img",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "li",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "code",
        "pre",
        "blockquote",
        "em",
        "strong",
        "b",
        "i",
        "del",
        "sup",
        "sub",
        "hr",
        "br",
        "section",
    }
)
_ATTRIBUTES = {
    "a": {"href", "title", "id", "class", "aria-label"},
    "img": {"src", "alt", "title", "width", "height"},
    "th": {"align"},
    "td": {"align"},
    "ol": {"start"},
    "li": {"id"},
    "code": {"class"},
    "sup": {"class"},
    "section": {"class"},
}
# Elements whose content is code or chrome, never prose: dropped whole, not unwrapped.
_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "template",
        "textarea",
        "title",
        "xmp",
        "noembed",
        "noframes",
        "noscript",
        "iframe",
        "object",
        "select",
    }
)
# The classes cmark-gfm puts on footnotes and code blocks; any other class is dropped.
_CLASSES = {"sup": {"footnote-ref"}, "section": {"footnotes"}, "a": {"footnote-backref"}}
_LANGUAGE = re.compile(r"language-[A-Za-z0-9_+#.-]{1,40}")
_FOOTNOTE_ID = re.compile(r"fn(?:ref)?-[^\s]{1,100}")
_SIZE = re.compile(r"[0-9]{1,5}%?")
_ALIGN = frozenset({"left", "center", "right"})
# XML 1.0 forbids these characters even as references; MJML parses our output as XML.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# Task-list checkboxes are form controls (stripped by the sanitizer); keep their state as text.
_CHECKBOXES = (
    ('<input type="checkbox" checked="" disabled="" />', "\u2611"),
    ('<input type="checkbox" disabled="" />', "\u2610"),
)
# cmark-gfm encodes &#xFFFE; and &#xFFFF; as invalid UTF-8, which cmarkgfm then fails to
# decode (UnicodeDecodeError); they are noncharacters, so U+FFFD loses nothing.
_NONCHARACTER_REF = re.compile(r"&#(?:[xX]0*[fF]{3}[eEfF]|0*6553[45]);")
_VOID = re.compile(r"<(br|hr|img)\b([^>]*)>")  # nh3 escapes ">" inside attribute values


def absolute_url(url: str, *, asset_base: str, site_base: str) -> str | None:
    """Make a link absolute ("/x" → site, "#x" stays, "x" → assets); None if not allowed."""
    url = url.strip()
    if not url:
        return None
    if url.startswith("#"):
        return url
    try:
        scheme = urlsplit(url).scheme.lower()
        if scheme:
            return url if scheme in SCHEMES else None
        if url.startswith("/") and not url.startswith("//"):
            return site_base + url[1:]
        joined = urljoin(asset_base, url)
    except ValueError:  # e.g. a malformed IPv6 host: not a link we can vouch for
        return None
    return joined if urlsplit(joined).scheme in SCHEMES else None


def _filter(
    asset_base: str, site_base: str, id_prefix: str
) -> Callable[[str, str, str], str | None]:
    """The per-attribute policy nh3 cannot express: URLs, class/id values, sizes."""

    def keep(tag: str, attr: str, value: str) -> str | None:
        if attr in ("href", "src"):
            # nh3 checks schemes before this filter runs, so the rewrite is re-checked here.
            if attr == "href" and value.startswith("#") and _FOOTNOTE_ID.fullmatch(value[1:]):
                return "#" + id_prefix + value[1:]
            return absolute_url(value, asset_base=asset_base, site_base=site_base)
        if attr == "id":
            return id_prefix + value if _FOOTNOTE_ID.fullmatch(value) else None
        if attr == "class":
            allowed = _CLASSES.get(tag, set())
            names = [
                c
                for c in value.split()
                if c in allowed or (tag == "code" and _LANGUAGE.fullmatch(c))
            ]
            return " ".join(names) or None
        if attr in ("width", "height"):
            return value if _SIZE.fullmatch(value.strip()) else None
        if attr == "align":
            return value if value in _ALIGN else None
        if attr == "start":
            return value if value.isdigit() and len(value) < 10 else None
        return value

    return keep


def render_markdown(text: str, *, asset_base: str, site_base: str, id_prefix: str = "") -> str:
    """Render Markdown (CommonMark + GFM tables, footnotes, strikethrough, autolinks) to HTML.

    Raw HTML is allowed, then sanitized to an email-safe allowlist; links get rel="noopener";
    relative URLs become absolute; the result is well-formed XML so MJML can embed it.
    ``id_prefix`` keeps footnote ids unique when several issues share one page.
    """
    if "&#" in text:
        text = _NONCHARACTER_REF.sub("&#xFFFD;", text)
    html = cmarkgfm.markdown_to_html_with_extensions(text, _OPTIONS, list(_EXTENSIONS))
    if "<input" in html:
        for box, mark in _CHECKBOXES:
            html = html.replace(box, mark)
    clean = nh3.clean(
        html,
        tags=set(_TAGS),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=_filter(asset_base, site_base, id_prefix),
        url_schemes=set(SCHEMES),
        link_rel="noopener",
    )
    return _well_formed(clean)


def _well_formed(html: str) -> str:
    """Turn nh3's HTML serialization into XML-compatible markup (void tags closed, no &nbsp;)."""
    html = _VOID.sub(lambda m: f"<{m.group(1)}{m.group(2).rstrip().rstrip('/')} />", html)
    return _NOT_XML.sub("", html.replace("&nbsp;", "&#160;"))
