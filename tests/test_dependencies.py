"""Every third-party import in the package is a core dependency, or an extra imported lazily.

`pip install -e . && newsletter serve` once crashed with an ImportError because a webhook
verifier imported a package only an extra installed. This test reads the imports of every module
and checks them against pyproject.toml, so that class of bug cannot come back.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "newsletter"

# Extras whose imports must stay inside functions (a config that needs them gets a hint with the
# install command instead of a traceback at start-up).
OPTIONAL = {"dkimpy": "dkim", "psycopg": "postgres"}


def _requirement_name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop, 1)[0]
    return requirement.lower().replace("_", "-")


def _core_dependencies() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_requirement_name(r) for r in project["dependencies"]}


def _imports(tree: ast.Module) -> list[tuple[str, bool, int]]:
    """(top-level module, imported at module level?, line) for every import statement."""
    found: list[tuple[str, bool, int]] = []
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            found.append((name.split(".")[0], id(node) in top_level, node.lineno))
    return found


def _third_party() -> list[tuple[str, str, bool, str]]:
    """(distribution, module, at module level, where) for every non-stdlib, non-own import."""
    dists = packages_distributions()
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for module, at_top, line in _imports(tree):
            if module in sys.stdlib_module_names or module in ("newsletter", "__future__"):
                continue
            dist = _requirement_name(dists.get(module, [module])[0])
            rows.append((dist, module, at_top, f"{path.relative_to(REPO)}:{line}"))
    return rows


def test_the_scan_sees_the_packages_we_know_we_use() -> None:
    # Guards the test itself: a broken scan would find nothing and pass.
    dists = {row[0] for row in _third_party()}
    assert {"jinja2", "mrml", "feedgen", "cryptography", "dkimpy", "httpx"} <= dists


def test_every_import_is_a_core_dependency_or_a_lazy_extra() -> None:
    core = _core_dependencies()
    wrong = []
    for dist, module, at_top, where in _third_party():
        if dist in core:
            continue
        if dist in OPTIONAL and not at_top:
            continue
        extra = OPTIONAL.get(dist)
        why = (
            f"only the {extra!r} extra installs it: import it inside a function"
            if extra
            else ("not a dependency in pyproject.toml")
        )
        wrong.append(f"{where}: import {module} ({dist}): {why}")
    assert wrong == []


@pytest.mark.parametrize("module", ["newsletter.serve.app", "newsletter.cli_serve"])
def test_serve_imports_without_extras(module: str) -> None:
    # The Quick start installs no extra; the module graph behind `newsletter serve` must load.
    __import__(module)
