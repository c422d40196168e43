"""Case 6: peak memory of a dry-run send to a very large list (outbox sender discarding)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.cases import Baseline, Case, Context, Job, child_argv, child_env, emit, result_of
from bench.cases import timed as timed_region
from bench.cases.case3_messages import send_project
from bench.corpus import subscriber_db


def parse_peak(stdout: str, wall: float) -> dict[str, Any]:
    data = result_of(stdout)
    data["value"] = data["vm_hwm_mb"]  # the child's own VmHWM: the whole process, at its peak
    return data


def _project(ctx: Context, count: int) -> Path:
    db = subscriber_db(ctx.work, count)
    # The dry run only reads the subscribers, so the shared template is used in place.
    extra = f'\n[sender.outbox]\npath = "/dev/null"\n\n[state]\ndatabase = "{db}"\n'
    return send_project(ctx, f"dry-{count}", extra=extra)


@contextmanager
def cases(ctx: Context) -> Iterator[list[Case]]:
    big, small = ctx.sizes.subscribers, ctx.sizes.subscribers_small
    print(
        f"preparing {big:,} and {small:,} subscribers (once, cached in {ctx.work}) …",
        file=sys.stderr,
    )
    root, root_small = _project(ctx, big), _project(ctx, small)
    job = Job(child_argv("case6_memory", root), root, parse_peak, env=child_env())
    flat = Job(child_argv("case6_memory", root_small), root_small, parse_peak, env=child_env())

    def check(runs: list[dict[str, Any]]) -> str:
        short = [r["count"] for r in runs if r["count"] != big]
        return f"the dry run built {short} messages, not {big}" if short else ""

    yield [
        Case(
            "memory",
            6,
            f"dry-run send to {big:,} subscribers: peak RSS",
            "MB",
            "lower",
            job,
            target=250,
            check=check,
            baselines=[
                Baseline("memory_small", f"same dry run, {small:,} subscribers", flat, growth=True)
            ],
            notes=[
                "send_edition(dry_run=True): DryRunSource pages the list, every message is "
                "built (as_bytes) and discarded by the outbox sender (path = /dev/null)"
            ],
        )
    ]


def main(argv: list[str]) -> None:
    from newsletter.config import load_config
    from newsletter.deliver.send import open_state, plan_send, send_edition

    root = Path(argv[0])
    os.chdir(root)
    config = load_config(root)
    db = open_state(config)
    plan = plan_send(config, 1, db=db)
    with timed_region() as t:
        report = send_edition(config, plan, db=db, dry_run=True)
    emit(count=report.run.sent, seconds=t["seconds"], cpu=t["cpu"])


if __name__ == "__main__":
    main(sys.argv[1:])
