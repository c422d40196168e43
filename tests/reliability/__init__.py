"""Reliability and security suite; shared helpers: CLI runs, output shapes, snapshots."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner, Result
from hypothesis import HealthCheck, settings

from newsletter.cli import cli

SECRET = "reliability-signing-secret-7f3a9c21"  # NEWSLETTER_SECRET for every send in the suite
NOW = "2024-06-01T00:00:00+00:00"
# Variables a developer's shell might hold that would change what a command does.
ENV: dict[str, str | None] = {
    "NEWSLETTER_NOW": NOW,
    "NEWSLETTER_SECRET": SECRET,
    "POSTMARK_SERVER_TOKEN": None,
    "NEWSLETTER_SMTP_PASSWORD": None,
}

# `path:line: message` (line optional: some problems concern a whole file).
LOCATED = re.compile(r"^(?P<path>[^\s:][^:]*?)(?::(?P<line>\d+))?: (?P<message>\S.*)$")
# The summary lines that may follow located problems.
SUMMARY = re.compile(r"^(\d+ error\(s\), \d+ warning\(s\)|\d+ problems in .+|hint: .+)$")
STATUS = re.compile(
    r"^edition (?P<edition>\d+): (?P<total>\d+) recipients = (?P<sent>\d+) sent "
    r"\+ (?P<failed>\d+) failed \+ (?P<pending>\d+) pending "
    r"\+ (?P<suppressed>\d+) suppressed$",
    re.MULTILINE,
)


def run(
    root: Path, *args: str, env: Mapping[str, str | None] | None = None, stdin: str | None = None
) -> Result:
    """``newsletter -C root ARGS…`` in-process; exceptions are caught and kept on the result."""
    return CliRunner().invoke(
        cli, ["-C", str(root), *args], env={**ENV, **(env or {})}, input=stdin
    )


def assert_no_crash(result: Result) -> None:
    """Exit codes come from SystemExit only: any other exception is a bug with a traceback."""
    exc = result.exception
    assert exc is None or isinstance(exc, SystemExit), (
        f"unhandled {type(exc).__name__}: {exc}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    )
    assert "Traceback" not in result.output


def located_lines(stderr: str) -> list[re.Match[str]]:
    """Parse every stderr line as a located problem or a summary line; fail on anything else."""
    found: list[re.Match[str]] = []
    # Lines as a terminal shows them: str.splitlines() would also split at \x1c-\x1e, \x85 …
    for line in stderr.rstrip("\n").split("\n") if stderr else []:
        if SUMMARY.match(line):
            continue
        m = LOCATED.match(line)
        assert m, f"not a `path:line: message` line: {line!r}\nstderr:\n{stderr}"
        found.append(m)
    return found


@dataclass(frozen=True)
class Status:
    """The reconciliation line of `newsletter status EDITION`."""

    total: int
    sent: int
    failed: int
    pending: int
    suppressed: int


def status(root: Path, edition: int = 1) -> Status:
    """Run `newsletter status EDITION` and check that its counts add up to the total."""
    result = run(root, "status", str(edition))
    assert result.exit_code == 0, result.output
    m = STATUS.search(result.stdout)
    assert m, result.stdout
    s = Status(*(int(m[k]) for k in ("total", "sent", "failed", "pending", "suppressed")))
    assert s.sent + s.failed + s.pending + s.suppressed == s.total, result.stdout
    return s


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# Bounded (max_examples per test below) so the folder runs in about a minute; no example
# database (nothing written into the repository); a failure prints the blob that replays it.
FUZZ = settings(
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
