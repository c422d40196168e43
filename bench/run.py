"""Run the benchmark suite: every case in fresh processes, medians, peak memory, ratios to peers.

python bench/run.py                 # full sizes, 3 runs each, writes bench/results/latest.json
python bench/run.py --quick         # tiny sizes, 1 run (what CI smoke-runs)
python bench/run.py --cases smtp,http --runs 5 --json /tmp/new.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/run.py` puts bench/, not the repo, on the path
    sys.path.insert(0, str(REPO))

from bench.cases import Baseline, Case, Context, Job, Sizes  # noqa: E402

MODULES = (
    "case1_build",
    "case2_rebuild",
    "case3_messages",
    "case4_smtp",
    "case5_http",
    "case6_memory",
)
ALIASES = {
    "build": "case1_build",
    "rebuild": "case2_rebuild",
    "messages": "case3_messages",
    "smtp": "case4_smtp",
    "http": "case5_http",
    "memory": "case6_memory",
}


def run_once(job: Job, index: int) -> dict[str, Any]:
    """One fresh process: wall time from spawn to exit, its own rusage, and what it reported."""
    if job.before is not None:
        job.before(index)
    env = {**os.environ, **job.env}
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            job.argv, cwd=job.cwd, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        timer = threading.Timer(job.timeout, proc.kill)
        timer.start()
        try:
            # wait4 (not wait) so the child's own peak RSS and CPU come back with it.
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(job.argv)}` exited with {proc.returncode}:\n{text[-3000:]}")
    data = job.parse(text, wall)
    data.update(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, rss_mb=usage.ru_maxrss / 1024)
    return data


def measure(job: Job, runs: int, label: str) -> dict[str, Any]:
    results = []
    for i in range(runs):
        print(f"  {label}: run {i + 1}/{runs} …", file=sys.stderr, flush=True)
        results.append(run_once(job, i))
        print(f"    {results[-1]['value']:,.3f}", file=sys.stderr, flush=True)
    values = [r["value"] for r in results]
    return {
        "runs": results,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "peak_rss_mb": max(r["rss_mb"] for r in results),
        "cpu_s": statistics.median(r["cpu_s"] for r in results),
    }


def _ratio(case: Case, base: Baseline, ours: float, theirs: float) -> float:
    if base.growth:
        return ours / theirs
    return theirs / ours if case.better == "lower" else ours / theirs


def run_case(case: Case, ctx: Context) -> dict[str, Any]:
    print(f"case {case.number}: {case.title}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    entry: dict[str, Any] = {
        "number": case.number,
        "title": case.title,
        "unit": case.unit,
        "better": case.better,
        "target": case.target,
        "notes": case.notes,
        "load_before": round(load, 2),
    }
    try:
        entry.update(measure(case.job, ctx.runs, case.key))
    except Exception as exc:  # one broken case must not hide the others' figures
        entry["error"] = str(exc)
        return entry
    median = entry["median"]
    if case.target is not None and not ctx.quick:  # targets are for the full sizes
        entry["holds"] = median <= case.target if case.better == "lower" else median >= case.target
    problem = case.check(entry["runs"]) if case.check else ""
    if problem:
        entry["holds"] = False
        entry["problem"] = problem
    entry["baselines"] = {}
    for base in case.baselines:
        b: dict[str, Any] = {
            "title": base.title,
            "ratio_target": base.ratio_target,
            "growth": base.growth,
        }
        entry["baselines"][base.key] = b
        if base.skip_reason:
            b["skipped"] = base.skip_reason
            continue
        try:
            b.update(measure(base.job, ctx.runs, base.key))
        except Exception as exc:
            b["error"] = str(exc)
            continue
        b["ratio"] = _ratio(case, base, median, b["median"])
        if base.ratio_target is not None and not ctx.quick:
            b["holds"] = b["ratio"] >= base.ratio_target
    return entry


# -- the table ----------------------------------------------------------------------------------


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:,.0f} {unit}"


def _holds(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "NO")


def table(results: dict[str, Any]) -> str:
    head = ("#", "case", "median", "runs", "peak RSS", "CPU", "target", "holds")
    rows: list[tuple[str, ...]] = [head]
    for entry in results["cases"].values():
        unit, op = entry["unit"], "≤" if entry["better"] == "lower" else "≥"
        target = f"{op} {fmt(entry['target'], unit)}" if entry.get("target") else "-"
        if "error" in entry:
            rows.append(
                (str(entry["number"]), entry["title"], "ERROR", "-", "-", "-", target, "NO")
            )
            continue
        rows.append(
            (
                str(entry["number"]),
                entry["title"],
                fmt(entry["median"], unit),
                str(len(entry["runs"])),
                f"{entry['peak_rss_mb']:.0f} MB",
                f"{entry['cpu_s']:.2f} s",
                target,
                _holds(entry.get("holds")),
            )
        )
        for b in entry.get("baselines", {}).values():
            label = f"  vs {b['title']}"
            if "skipped" in b or "error" in b:
                rows.append(
                    ("", label, "skipped" if "skipped" in b else "ERROR", "-", "-", "-", "-", "-")
                )
                continue
            word = (
                "of it" if b["growth"] else ("faster" if entry["better"] == "lower" else "the rate")
            )
            want = f"≥ {b['ratio_target']:g}×" if b.get("ratio_target") else "-"
            rows.append(
                (
                    "",
                    label,
                    fmt(b["median"], unit),
                    str(len(b["runs"])),
                    f"{b['peak_rss_mb']:.0f} MB",
                    f"{b['cpu_s']:.2f} s",
                    want,
                    f"{_holds(b.get('holds'))}: {b['ratio']:.1f}× {word}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for entry in results["cases"].values():
        for text in (
            ([entry["problem"]] if "problem" in entry else [])
            + ([entry["error"].splitlines()[0]] if "error" in entry else [])
            + [
                f"{b['title']}: {b.get('skipped') or b['error'].splitlines()[0]}"
                for b in entry.get("baselines", {}).values()
                if "skipped" in b or "error" in b
            ]
        ):
            lines.append(f"note (case {entry['number']}): {text}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes and 1 run (CI smoke test)")
    ap.add_argument("--no-peers", action="store_true", help="skip Pelican (no virtualenv made)")
    ap.add_argument("--runs", type=int, help="runs per measurement (default 3, --quick 1)")
    ap.add_argument("--cases", help="comma-separated subset: " + ", ".join(ALIASES))
    ap.add_argument(
        "--json",
        type=Path,
        help="where to write the results "
        "(default bench/results/latest.json; --quick: bench/.work/quick.json)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=REPO / "bench" / ".work",
        help="scratch directory for corpora, databases and peers",
    )
    args = ap.parse_args(argv)
    runs = args.runs or (1 if args.quick else 3)
    work = (args.work / "quick" if args.quick else args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        work=work,
        sizes=Sizes.quick() if args.quick else Sizes(),
        quick=args.quick,
        peers=not args.no_peers,
        runs=runs,
    )
    wanted = (
        [ALIASES.get(c.strip(), c.strip()) for c in args.cases.split(",")]
        if args.cases
        else list(MODULES)
    )
    unknown = sorted(set(wanted) - set(MODULES))
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(ALIASES)}")
    load = os.getloadavg()[0]
    if load > 1.0:
        print(
            f"warning: load average is {load:.1f} on {os.cpu_count()} CPUs: other work is "
            "running, wall-clock figures will be pessimistic",
            file=sys.stderr,
        )
    results: dict[str, Any] = {
        "meta": {
            **machine(),
            "quick": args.quick,
            "runs": runs,
            "sizes": vars(ctx.sizes),
            "load_at_start": load,
        },
        "cases": {},
    }
    started = time.perf_counter()
    for name in wanted:
        module = importlib.import_module(f"bench.cases.{name}")
        try:
            with module.cases(ctx) as cases:
                for case in cases:
                    results["cases"][case.key] = run_case(case, ctx)
        except Exception as exc:  # setup failed (corpus, server): report it and go on
            results["cases"][name] = {
                "number": MODULES.index(name) + 1,
                "title": name,
                "unit": "-",
                "better": "lower",
                "target": None,
                "error": f"setup failed: {exc}",
            }
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["load_at_end"] = os.getloadavg()[0]
    out = args.json or (
        work / "quick.json" if args.quick else REPO / "bench" / "results" / "latest.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.quick:
        print("quick sizes: a smoke run; targets are judged at the full sizes only\n")
    print(table(results))
    print(
        f"\n{len(results['cases'])} measurements in {results['meta']['seconds']:.0f} s; "
        f"results in {out}"
    )
    return 1 if any("error" in e for e in results["cases"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
