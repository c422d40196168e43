"""What every case module shares: sizes, the measured subprocess (Job) and the case description."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RESULT_PREFIX = "BENCH-RESULT "
SECRET = "bench-secret-0123456789abcdef0123"


@dataclass(frozen=True)
class Sizes:
    """How big each case is; ``--quick`` shrinks everything so CI can smoke-run it."""

    files: int = 5000  # issue files for the build cases (20 per week: 250 editions)
    recipients: int = 100_000  # messages prepared in case 3
    stdlib_recipients: int = 2_000  # the slow stdlib baseline of case 3 (a rate, so fewer)
    smtp: int = 10_000  # messages sent over SMTP in case 4
    smtp_naive: int = 2_000  # the connection-per-message baseline of case 4
    http: int = 10_000  # messages sent through the Postmark-like API in case 5
    http_naive: int = 200  # one request per message takes 50 ms each: a rate from 200
    subscribers: int = 1_000_000  # the dry run of case 6
    subscribers_small: int = 100_000  # the same dry run at a tenth, to show memory is flat

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            files=60,
            recipients=2_000,
            stdlib_recipients=100,
            smtp=200,
            smtp_naive=50,
            http=200,
            http_naive=10,
            subscribers=5_000,
            subscribers_small=1_000,
        )


@dataclass
class Context:
    """Settings of one ``bench/run.py`` invocation, handed to every case module."""

    work: Path  # bench/.work: every file the bench writes lives under it
    sizes: Sizes
    quick: bool
    peers: bool  # measure Pelican (installed into its own virtualenv on first use)
    runs: int
    python: str = sys.executable


@dataclass
class Job:
    """One kind of measured subprocess, run ``runs`` times in a fresh process each time.

    ``parse`` turns the child's stdout and its wall time into the measured value; ``before``
    runs in the parent before each run, outside the timing (e.g. edit a file, wipe an output).
    """

    argv: list[str]
    cwd: Path
    parse: Callable[[str, float], dict[str, Any]]
    env: dict[str, str] = field(default_factory=dict)
    before: Callable[[int], object] | None = None
    timeout: float = 900.0


@dataclass
class Baseline:
    """A peer or naive implementation measured in the same run, and the ratio it must show."""

    key: str
    title: str
    job: Job
    ratio_target: float | None = None  # ours must be at least this many times better
    skip_reason: str = ""  # set when the peer cannot be measured here (printed, not hidden)
    growth: bool = False  # report ours ÷ baseline (how much it grew), not how much better


@dataclass
class Case:
    """One row of the table: what is measured, its target, and its baselines."""

    key: str
    number: int
    title: str
    unit: str  # "s", "msg/s" or "MB"
    better: str  # "lower" or "higher"
    job: Job
    target: float | None = None
    baselines: list[Baseline] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    check: Callable[[list[dict[str, Any]]], str] | None = None  # "" when the runs look right


# -- helpers for the parent ---------------------------------------------------------------------


def child_argv(module: str, *args: object) -> list[str]:
    """Run ``bench.cases.<module>`` as a fresh interpreter (``python -m``) from the repo root."""
    return [sys.executable, "-m", f"bench.cases.{module}", *map(str, args)]


def child_env(**extra: str) -> dict[str, str]:
    env = {"PYTHONPATH": str(REPO), "NEWSLETTER_SECRET": SECRET}
    env.update(extra)
    return env


def result_of(stdout: str) -> dict[str, Any]:
    """The JSON a case child printed on its ``BENCH-RESULT`` line."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            data: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return data
    raise ValueError("the child printed no BENCH-RESULT line:\n" + stdout[-2000:])


def rate_of(stdout: str, wall: float) -> dict[str, Any]:
    """Messages per second over the timed region the child reported."""
    data = result_of(stdout)
    data["value"] = data["count"] / data["seconds"]
    return data


# -- helpers for the children -------------------------------------------------------------------


def emit(**data: Any) -> None:
    """Print the child's result; the parent reads only this line."""
    data["vm_hwm_mb"] = peak_rss_mb()
    print(RESULT_PREFIX + json.dumps(data), flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed() -> Iterator[dict[str, float]]:
    """``with timed() as t: ...`` then ``t["seconds"]`` and ``t["cpu"]`` (this process)."""
    out: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield out
    out["seconds"] = time.perf_counter() - wall
    out["cpu"] = time.process_time() - cpu


def chdir_project(root: Path) -> None:
    os.chdir(root)


def send_child(argv: list[str], naive: Callable[[Any, int, int], None]) -> Any:
    """The child of the send cases: ``ours ROOT N`` times send_edition of edition 1 and emits
    nothing itself (returns ``(report, timing)``); ``naive ROOT N PORT`` runs ``naive`` instead
    and returns None."""
    from newsletter.config import load_config
    from newsletter.deliver.send import open_state, plan_send, send_edition

    mode, root, n = argv[0], Path(argv[1]), int(argv[2])
    os.chdir(root)
    config = load_config(root)
    if mode == "naive":
        naive(config, n, int(argv[3]))
        return None
    db = open_state(config)
    plan = plan_send(config, 1, db=db)
    with timed() as t:
        report = send_edition(config, plan, db=db)
    return report, t
