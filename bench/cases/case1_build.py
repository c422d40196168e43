"""Case 1: a cold full build (`newsletter build`) against Pelican on the same Markdown."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.cases import Baseline, Case, Context, Job, child_env
from bench.corpus import make_project, pelican_copy

# Pinned so two runs of the bench compare the same peer; the versions measured in README.md.
PELICAN_PACKAGES = ("pelican==4.12.0", "markdown==3.11.3")
PELICAN_CONF = """\
# Written by bench/cases/case1_build.py: Pelican's defaults plus the feeds newsletter builds.
AUTHOR = "ML 论文周报编辑部"
SITENAME = "ML 论文周报"
SITEURL = "https://papers.example.org"
PATH = "content"
TIMEZONE = "Asia/Shanghai"
DEFAULT_LANG = "zh"
FEED_DOMAIN = SITEURL
FEED_ALL_ATOM = "feeds/all.atom.xml"
FEED_ALL_RSS = "feeds/all.rss.xml"
FEED_MAX_ITEMS = 50
CATEGORY_FEED_ATOM = None
TRANSLATION_FEED_ATOM = None
AUTHOR_FEED_ATOM = None
AUTHOR_FEED_RSS = None
CACHE_CONTENT = False
LOAD_CONTENT_CACHE = False
"""
_SUMMARY = re.compile(r"(\d+) editions: (\d+) rendered, (\d+) unchanged")


def project_root(ctx: Context) -> Path:
    return ctx.work / f"build-{ctx.sizes.files}"


def prepare_project(ctx: Context) -> Path:
    """A fresh copy of the corpus (the rebuild case edits it, so every bench run starts over)."""
    root = project_root(ctx)
    if root.exists():
        shutil.rmtree(root)
    make_project(root, ctx.sizes.files)
    return root


def parse_build(stdout: str, wall: float) -> dict[str, Any]:
    m = _SUMMARY.search(stdout)
    if m is None:
        if "nothing changed" in stdout:
            return {"value": wall, "rendered": 0}
        raise ValueError(f"unexpected `newsletter build` output: {stdout[-500:]!r}")
    return {"value": wall, "editions": int(m.group(1)), "rendered": int(m.group(2))}


def build_job(root: Path) -> Job:
    return Job([sys.executable, "-m", "newsletter", "build"], root, parse_build, env=child_env())


def _wipe(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def ensure_pelican(ctx: Context) -> tuple[Path | None, str]:
    """Pelican's own virtualenv under the work dir, made on first use: (pelican, why not)."""
    if not ctx.peers:
        return None, "skipped (--no-peers)"
    venv = ctx.work / "venv-pelican"
    pelican = venv / "bin" / "pelican"
    if pelican.exists():
        return pelican, ""
    print(f"installing Pelican into {venv} (first use only) …", file=sys.stderr)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *PELICAN_PACKAGES],
    ]
    for argv in steps:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return None, (
                "skipped: could not install Pelican (" + " / ".join(tail) + "); "
                f"try: {' '.join(argv)}"
            )
    return pelican, ""


def pelican_baseline(ctx: Context, source: Path) -> Baseline:
    title = "Pelican, same Markdown + Atom/RSS feeds"
    pelican, why = ensure_pelican(ctx)
    site = ctx.work / f"pelican-{ctx.sizes.files}"
    if pelican is None:
        return Baseline("pelican", title, Job([], site, parse_build), 3.0, skip_reason=why)
    _wipe(site)
    articles = pelican_copy(source, site)
    (site / "pelicanconf.py").write_text(PELICAN_CONF, encoding="utf-8")
    output = site / "output"

    def parse(stdout: str, wall: float) -> dict[str, Any]:
        files = sum(1 for p in output.rglob("*") if p.is_file())
        return {"value": wall, "articles": articles, "files": files}

    job = Job(
        [str(pelican), "content", "-s", "pelicanconf.py", "-o", "output", "-q"],
        site,
        parse,
        before=lambda i: _wipe(output),
    )
    return Baseline("pelican", title, job, 3.0)


@contextmanager
def cases(ctx: Context) -> Iterator[list[Case]]:
    root = prepare_project(ctx)
    job = build_job(root)
    out = root / "public"
    # Cold: no output, no render or issue cache, no edition lock.
    job.before = lambda i: _wipe(out, root / ".newsletter", root / "editions.lock")

    def check(runs: list[dict[str, Any]]) -> str:
        bad = [r for r in runs if r.get("rendered") != r.get("editions")]
        return "a cold build did not render every edition" if bad else ""

    weeks = (ctx.sizes.files + 19) // 20
    case = Case(
        "build_full",
        1,
        f"full build, {ctx.sizes.files:,} issue files ({weeks} editions)",
        "s",
        "lower",
        job,
        target=10.0,
        check=check,
        baselines=[pelican_baseline(ctx, root)],
        notes=[
            "`newsletter build` as a fresh process, timed from spawn to exit: email "
            "HTML + text and archive page per edition, index, RSS, Atom, JSON Feed"
        ],
    )
    yield [case]
