"""Take the README's preview screenshots (desktop and mobile) of the sample project.

Run from the repository root:  python docs/img/make_screenshots.py
Needs Debian's chromium (/usr/bin/chromium) and the CJK font (fonts-noto-cjk).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from newsletter.preview.command import background_server

REPO = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EDITION = 2  # the sample edition with an editor's note, four issues and an image-free layout
SHOTS = {
    # name: (viewport width, viewport height, query)
    "preview-desktop.png": (1600, 1000, "?view=both&width=700&dark=0"),
    "preview-mobile.png": (1000, 1000, "?view=mobile&width=700&dark=1"),
}


def copy_sample(into: Path) -> Path:
    """A throwaway copy, so the preview's caches never land in the repository."""
    for name in ("config.toml", "editions.lock"):
        if (REPO / name).exists():
            shutil.copy2(REPO / name, into / name)
    for name in ("issues", "editions", "templates", "static"):
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, into / name)
    return into


def main() -> int:
    with (
        tempfile.TemporaryDirectory() as tmp,
        background_server(copy_sample(Path(tmp)), watch=False) as url,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for name, (width, height, query) in SHOTS.items():
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(f"{url}editions/{EDITION}/{query}", wait_until="load")
                page.wait_for_function("document.querySelector('iframe.fit').offsetHeight > 950")
                page.screenshot(path=str(OUT / name))
                page.close()
                print(f"wrote {OUT / name}")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
