"""The curated public API in newsletter/__init__.py (after httpx's test_exported_members)."""

from __future__ import annotations

import subprocess
import sys

import newsletter
from tests.conftest import MakeProject, issue


def test_all_is_sorted_and_every_name_resolves_to_our_own_object() -> None:
    assert newsletter.__all__ == sorted(newsletter.__all__)
    assert len(set(newsletter.__all__)) == len(newsletter.__all__)
    for name in newsletter.__all__:
        if name == "__version__":
            continue
        value = getattr(newsletter, name)
        assert value.__module__.startswith("newsletter."), name
        assert value.__name__ == name


def test_the_lazy_table_and_all_name_the_same_things() -> None:
    assert set(newsletter._EXPORTS) == set(newsletter.__all__) - {"__version__"}


def test_unknown_names_raise_attribute_error() -> None:
    try:
        newsletter.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_importing_the_package_stays_cheap() -> None:
    # `newsletter --help` imports the package: none of the heavy libraries may load with it.
    code = (
        "import sys, newsletter; "
        "print(sorted(m for m in ('jinja2', 'sqlalchemy', 'mrml', 'httpx', 'feedgen') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_api_builds_and_sends_an_edition(make_project: MakeProject, frozen_now: object) -> None:
    # The names are usable together, not just importable.
    config = make_project({"issues/a.md": issue("A", "2024-04-09", url="https://x.org/a")})
    report = newsletter.build(config)
    assert isinstance(report, newsletter.BuildReport) and report.rendered == [1]
    grouping = newsletter.load_and_group(config)
    rendered = newsletter.render_edition(config, grouping, 1)
    assert isinstance(rendered, newsletter.RenderedEdition)
    assert rendered.subject == "Test Digest #1"
    assert issubclass(newsletter.MemorySender, newsletter.Sender)
