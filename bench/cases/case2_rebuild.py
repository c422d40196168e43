"""Case 2: rebuilding the case-1 site with nothing changed, and after editing one issue file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.cases import Case, Context, child_env
from bench.cases.case1_build import build_job, prepare_project, project_root
from bench.corpus import edit_issue


@contextmanager
def cases(ctx: Context) -> Iterator[list[Case]]:
    root = project_root(ctx)
    if not (root / "config.toml").exists():
        prepare_project(ctx)
    # Bring the site up to date first (a no-op when case 1 just built it), unmeasured.
    subprocess.run(
        [sys.executable, "-m", "newsletter", "build"],
        cwd=root,
        check=True,
        env={**os.environ, **child_env()},
        capture_output=True,
    )
    issues = sorted((root / "issues").rglob("*.md"))

    noop = build_job(root)

    def check_noop(runs: list[dict[str, Any]]) -> str:
        return "a no-op rebuild rendered something" if any(r["rendered"] for r in runs) else ""

    edit = build_job(root)
    # A different file each run, from the middle of the archive (not the feed window's edge).
    edit.before = lambda i: edit_issue(issues[len(issues) // 2 + 37 * i], f"run {i}")

    def check_edit(runs: list[dict[str, Any]]) -> str:
        wrong = [r.get("rendered") for r in runs if r.get("rendered") != 1]
        return f"an edit re-rendered {wrong} editions instead of 1" if wrong else ""

    files = f"{ctx.sizes.files:,} files"
    yield [
        Case(
            "build_noop",
            2,
            f"rebuild, nothing changed ({files})",
            "s",
            "lower",
            noop,
            target=1.0,
            check=check_noop,
            notes=[
                "fresh `newsletter build` process; answers from the build manifest and the "
                "issue cache in .newsletter/cache"
            ],
        ),
        Case(
            "build_edit",
            2,
            f"rebuild after editing one issue ({files})",
            "s",
            "lower",
            edit,
            target=1.5,
            check=check_edit,
            notes=["one edition re-rendered; index and feeds rewritten from the render cache"],
        ),
    ]
