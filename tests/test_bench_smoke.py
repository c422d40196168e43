"""The benchmark suite runs end to end at tiny sizes and reports every case with numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("build_full", "build_noop", "build_edit", "messages", "smtp", "http", "memory")


def test_quick_bench_prints_a_table_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--quick",
            "--no-peers",
            "--work",
            str(tmp_path / "work"),
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout
    for number in range(1, 7):
        assert any(line.startswith(f"{number}  ") for line in table.splitlines()), table
    assert "ERROR" not in table, table
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["meta"]["quick"] is True
    assert set(CASES) <= set(results["cases"]), sorted(results["cases"])
    for key in CASES:
        entry = results["cases"][key]
        assert "error" not in entry, entry
        assert math.isfinite(entry["median"]) and entry["median"] > 0, (key, entry)
        assert entry["peak_rss_mb"] > 0, (key, entry)
        assert "problem" not in entry, (key, entry["problem"])
        for name, base in entry["baselines"].items():
            if "skipped" not in base:
                assert base["median"] > 0 and base["ratio"] > 0, (key, name, base)
    assert "skipped" in results["cases"]["build_full"]["baselines"]["pelican"]
