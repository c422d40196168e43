"""End to end in a real browser: load an edition, switch width and dark mode, edit, break, fix."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from newsletter.preview.command import background_server
from tests.preview import SAMPLE_NOW, copy_sample

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright's own browser downloads are not used
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
QLORA = "issues/2024/2024-04-15-qlora.md"
TITLE = 'title: "QLoRA: Efficient Finetuning of Quantized LLMs"'
EDITED = "QLoRA（实时预览：已编辑）"
UPDATE_TIMEOUT = 5000  # ms: a save must show up in the open page well within this
LIGHT, DARK = "rgb(255, 255, 255)", "rgb(13, 17, 23)"  # the email template's two backgrounds


def require_browser() -> None:
    """Skip on a laptop without chromium; in CI (CI is set) a missing browser is a failure."""
    problem = None
    if not Path(CHROMIUM).exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright Python package is missing (pip install -e '.[test]')"
    if problem and os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {problem}")
    if problem:
        pytest.skip(problem)


def box_width(locator: Any) -> float:
    box = locator.bounding_box()
    assert box is not None
    return float(box["width"])


def test_preview_end_to_end(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import expect, sync_playwright

    root = copy_sample(tmp_path / "project")
    qlora = root / QLORA
    original = qlora.read_text("utf-8")
    assert TITLE in original
    with background_server(root, now=lambda: SAMPLE_NOW) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            # Load an edition from the index, where the open edition is listed too.
            page.goto(url)
            expect(page.locator("tr.edition[data-number='4']")).to_contain_text("still collecting")
            page.get_by_role("link", name="ML 论文周报 第2期", exact=True).click()
            expect(page).to_have_url(re.compile(r"/editions/2/$"))
            expect(page.locator("#live")).to_have_class(re.compile(r"\bon\b"))
            mobile, desktop = page.locator("#frame-mobile"), page.locator("#frame-desktop")
            email = page.frame_locator("#frame-mobile")
            expect(email.locator("h3", has_text="QLoRA: Efficient Finetuning")).to_be_visible()
            assert (box_width(mobile), box_width(desktop)) == (375, 700)
            assert (
                page.frame_locator("#frame-desktop")
                .locator(".page")
                .evaluate("e => e.getBoundingClientRect().width")
                == 700
            )

            # Switch the desktop width, then show the mobile width alone.
            page.click("#width-800")
            expect(page).to_have_url(re.compile(r"width=800"))
            assert box_width(desktop) == 800
            page.click("#view-mobile")
            expect(desktop).to_have_count(0)
            assert box_width(mobile) == 375

            # Dark mode runs the email's own prefers-color-scheme rules.
            background = "e => getComputedStyle(e).backgroundColor"
            assert email.locator(".page").evaluate(background) == LIGHT
            page.click("#theme-dark")
            expect(page).to_have_url(re.compile(r"dark=1"))
            assert email.locator(".page").evaluate(background) == DARK
            heading = "e => getComputedStyle(e).color"
            assert email.locator("h1").evaluate(heading) == "rgb(230, 237, 243)"

            # Saving an issue file updates the open page, keeping width and theme.
            qlora.write_text(original.replace(TITLE, f'title: "{EDITED}"'), "utf-8")
            expect(email.get_by_text(EDITED).first).to_be_visible(timeout=UPDATE_TIMEOUT)
            expect(page.locator("pre.text-part")).to_contain_text(EDITED)
            assert "view=mobile" in page.url and "dark=1" in page.url
            assert email.locator(".page").evaluate(background) == DARK

            # Breaking it shows the error over the page; fixing it brings the page back.
            qlora.write_text(original.replace("date: 2024-04-15", "date: 2024-04-31"), "utf-8")
            overlay = page.locator("#error-overlay")
            expect(overlay).to_be_visible(timeout=UPDATE_TIMEOUT)
            expect(overlay).to_contain_text(f"{QLORA}:3: date:")
            qlora.write_text(original, "utf-8")
            expect(overlay).to_have_count(0, timeout=UPDATE_TIMEOUT)
            expect(email.locator("h3", has_text="QLoRA: Efficient Finetuning")).to_be_visible()
        finally:
            browser.close()
    assert not (root / "public").exists()
