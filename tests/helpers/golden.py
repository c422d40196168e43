"""Golden output: compare a built tree byte for byte, rewritten only with --update-golden."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

GOLDEN_ROOT = Path(__file__).resolve().parents[1] / "golden"


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` by POSIX relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_golden(got: dict[str, bytes], name: str, request: pytest.FixtureRequest) -> None:
    """``got`` equals tests/golden/<name>/; ``pytest --update-golden`` rewrites it on purpose."""
    golden = GOLDEN_ROOT / name
    if request.config.getoption("--update-golden"):
        shutil.rmtree(golden, ignore_errors=True)
        for rel, data in got.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_bytes(data)
    assert golden.is_dir(), f"no golden files in {golden}: run pytest --update-golden, on purpose"
    expected = tree(golden)
    assert sorted(got) == sorted(expected)
    for rel in sorted(expected):
        assert got[rel] == expected[rel], f"{rel} differs from tests/golden/{name}/{rel}"
