"""Markdown rendering: GFM features, sanitization, absolute URLs, well-formed output."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content import render_markdown

ASSETS = "https://example.org/digest/assets/2024/"
SITE = "https://example.org/digest/"


def render(text: str, id_prefix: str = "") -> str:
    return render_markdown(text, asset_base=ASSETS, site_base=SITE, id_prefix=id_prefix)


def parse_xml(html: str) -> ET.Element:
    """MJML needs well-formed markup: the output must parse as XML once wrapped."""
    return ET.fromstring(f"<root>{html}</root>")


def test_scripts_and_styles_are_removed_with_their_content() -> None:
    html = render(
        "Hi <script>alert('x')</script><style>p{color:red}</style> there\n\n"
        "<script>\nsteal()\n</script>\n"
    )
    assert "<script" not in html and "alert" not in html and "steal" not in html
    assert "<style" not in html and "color" not in html
    assert html.startswith("<p>Hi  there</p>")


def test_event_handlers_and_javascript_urls_are_removed() -> None:
    html = render(
        '<img src=x onerror="alert(1)"> <a href="javascript:alert(2)" onclick="x()">a</a>'
        ' [b](javascript:alert(3)) <a href="JaVa&#x09;Script:alert(4)">c</a>'
    )
    assert "onerror" not in html and "onclick" not in html
    assert "javascript" not in html.lower() and "alert" not in html
    assert f'<img src="{ASSETS}x" />' in html
    assert '<a rel="noopener">a</a>' in html


def test_style_attributes_with_expressions_are_removed() -> None:
    html = render(
        '<p style="width: expression(alert(1))">x</p>'
        '<span style="background:url(javascript:alert(1))">y</span>'
    )
    assert "style" not in html and "expression" not in html
    assert html == "<p>x</p>y\n"


def test_data_and_other_schemes_are_refused() -> None:
    html = render("![x](data:image/png;base64,AAAA) [f](file:///etc/passwd) [m](mailto:a@b.c)")
    assert "data:" not in html and "file:" not in html
    assert '<a href="mailto:a@b.c" rel="noopener">m</a>' in html


def test_links_get_rel_noopener() -> None:
    assert render("[x](https://arxiv.org/abs/1)") == (
        '<p><a href="https://arxiv.org/abs/1" rel="noopener">x</a></p>\n'
    )


def test_relative_urls_become_absolute() -> None:
    html = render(
        "![fig](figs/a.png) [root](/archive/) [frag](#top) [up](../other/b.pdf) "
        '<img src="raw.jpg" alt="r"> [abs](https://x.org/p)'
    )
    assert f'<img src="{ASSETS}figs/a.png" alt="fig" />' in html
    assert f'<a href="{SITE}archive/" rel="noopener">root</a>' in html
    assert '<a href="#top" rel="noopener">frag</a>' in html
    assert '<a href="https://example.org/digest/assets/other/b.pdf" rel="noopener">up</a>' in html
    assert f'<img src="{ASSETS}raw.jpg" alt="r" />' in html
    assert '<a href="https://x.org/p" rel="noopener">abs</a>' in html


def test_tables_render_with_alignment() -> None:
    html = render("| a | b |\n|:-:|--:|\n| 1 | ~~2~~ |\n")
    assert '<th align="center">a</th>' in html and '<th align="right">b</th>' in html
    assert '<td align="right"><del>2</del></td>' in html
    table = parse_xml(html).find("table")
    assert table is not None and [c.tag for c in table] == ["thead", "tbody"]


def test_footnotes_link_both_ways_with_prefixed_ids() -> None:
    html = render("Claim[^1].\n\n[^1]: Source.\n", id_prefix="alpha-")
    root = parse_xml(html)
    ref = root.find(".//sup[@class='footnote-ref']/a")
    assert ref is not None and ref.get("href") == "#alpha-fn-1"
    assert ref.get("id") == "alpha-fnref-1"
    note = root.find(".//section[@class='footnotes']/ol/li")
    assert note is not None and note.get("id") == "alpha-fn-1"
    back = note.find(".//a[@class='footnote-backref']")
    assert back is not None and back.get("href") == "#alpha-fnref-1"


def test_other_ids_and_classes_are_dropped() -> None:
    html = render('<p id="x" class="big">a</p>\n\n```python\nx = 1\n```\n')
    assert html == '<p>a</p>\n<pre><code class="language-python">x = 1\n</code></pre>\n'


def test_cjk_text_and_entities_survive() -> None:
    html = render("## 内容概要\n\nAlphaGeometry——一个定理证明者；**无需**人类演示。&copy; a&nbsp;b")
    assert "<h2>内容概要</h2>" in html
    assert "AlphaGeometry——一个定理证明者；<strong>无需</strong>人类演示。© a&#160;b" in html


def test_task_lists_keep_their_state() -> None:
    assert render("- [ ] todo\n- [x] done\n") == "<ul>\n<li>☐ todo</li>\n<li>☑ done</li>\n</ul>\n"


def test_noncharacter_references_do_not_crash_cmark() -> None:
    # cmark-gfm emits invalid UTF-8 for these two code points; every other one is fine.
    for ref in ("&#xFFFE;", "&#65535;", "&#x0000fffe;"):
        assert render(f"a{ref} `{ref}` [l](x '{ref}')\n```{ref}\nc\n```\n").startswith("<p>a�")


def test_tricky_html_is_well_formed() -> None:
    samples = [
        "<b>unclosed <i>tags",
        "a < b > c & d",
        "line<br>break<hr>rule",
        "<p>para<p>again",
        "<table><tr><td>cell",
        "</p></div>stray closers",
        "<img src='a.png'>",
        "x &nbsp; y",
        "<a href='x'>link <a href='y'>nested</a>",
        "![a](b.png 'title with \" quote')",
        "<ul><li>one<li>two",
        "<em><strong>misnested</em></strong>",
        "&#1;&#xFFFE;ctrl\x0b",
        "<img alt='a>b' src=c>",
        '<img alt="<br>" src=x title="a<hr>b">',
    ]
    for text in samples:
        html = render(text)
        parse_xml(html)  # raises if not well-formed
        assert not re.search(r"<(br|hr|img)\b[^>]*(?<!/)>", html), html


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_renders_to_well_formed_markup(text: str) -> None:
    parse_xml(render(text))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<",
                ">",
                "&",
                "<b>",
                "</b>",
                "<br>",
                "<img src=x>",
                "<p>",
                "</p>",
                "[^1]",
                "[^1]: n\n",
                "| a |\n|---|\n",
                "*",
                "`",
                "\n",
                "\n\n",
                "x",
                "中",
                "&nbsp;",
                "<table>",
                "<td>",
                "<!--",
                "-->",
                "<script>",
                "<a href='/y'>",
                "</a>",
                "![i](j.png)",
                "~~",
                "www.a.org",
            ]
        ),
        max_size=30,
    ).map("".join)
)
def test_markdown_and_html_soup_is_well_formed(text: str) -> None:
    html = render(text)
    parse_xml(html)
    assert "<script" not in html
