"""Compare two benchmark result files: `python bench/compare.py old.json new.json`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

THRESHOLD = 0.05  # changes smaller than this are within run-to-run noise on a shared machine


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _rows(results: dict[str, Any]) -> dict[str, tuple[str, str, str, float]]:
    """key → (title, unit, better, median) for every case and measured baseline."""
    rows: dict[str, tuple[str, str, str, float]] = {}
    for key, entry in results.get("cases", {}).items():
        if "median" in entry:
            rows[key] = (entry["title"], entry["unit"], entry["better"], entry["median"])
        for bkey, base in entry.get("baselines", {}).items():
            if "median" in base:
                rows[f"{key}/{bkey}"] = (
                    f"  vs {base['title']}",
                    entry["unit"],
                    entry["better"],
                    base["median"],
                )
    return rows


def compare(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, int]:
    """The comparison table and how many measurements got worse beyond the noise threshold."""
    a, b = _rows(old), _rows(new)
    lines = [f"{'case':58} {'old':>14} {'new':>14} {'change':>8}", "-" * 97]
    worse = 0
    for key in list(a) + [k for k in b if k not in a]:
        if key not in a or key not in b:
            title = (a.get(key) or b[key])[0]
            lines.append(f"{title[:58]:58} {'only in ' + ('old' if key in a else 'new'):>38}")
            continue
        title, unit, better, before = a[key]
        after = b[key][3]
        change = (after - before) / before if before else 0.0
        improved = change < 0 if better == "lower" else change > 0
        verdict = "" if abs(change) < THRESHOLD else ("better" if improved else "WORSE")
        worse += verdict == "WORSE" and "/" not in key  # a baseline getting slower is no regression
        lines.append(
            f"{title[:58]:58} {before:>10,.2f} {unit:<3} {after:>10,.2f} {unit:<3} "
            f"{change:>+7.1%} {verdict}"
        )
    meta = [
        f"old: {old['meta'].get('commit', '?')} {old['meta'].get('date', '')}, "
        f"new: {new['meta'].get('commit', '?')} {new['meta'].get('date', '')}"
    ]
    return "\n".join(meta + lines), worse


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument(
        "--fail-on-regression",
        action="store_true",
        help=f"exit 1 when a case got worse by more than {THRESHOLD:.0%}",
    )
    args = ap.parse_args(argv)
    text, worse = compare(_load(args.old), _load(args.new))
    print(text)
    return 1 if worse and args.fail_on_regression else 0


if __name__ == "__main__":
    sys.exit(main())
