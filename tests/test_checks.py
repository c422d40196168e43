"""Pre-send checks: each lint rule on a minimal project, naming the edition and the file."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.checks import (
    GMAIL_CLIP_BYTES,
    CheckResult,
    Finding,
    lint_edition,
    next_to_send,
    run_checks,
)
from newsletter.cli import cli
from newsletter.config import Config, load_config
from newsletter.models import UNSUBSCRIBE_PLACEHOLDER
from newsletter.pipeline import EditionRenderer, load_and_group
from newsletter.render.env import PACKAGE_TEMPLATES

REPO = Path(__file__).resolve().parents[1]
# Monday 2024-05-13: the weeks of 29 April and 6 May are closed, the week of 13 May is open.
NOW = datetime(2024, 5, 13, 9, 0, tzinfo=UTC)
CONFIG = """\
[newsletter]
title = "Test Digest"
base_url = "https://news.example.org/"
timezone = "UTC"
email = "digest@news.example.org"

[editions]
group_by = "{group_by}"
{extra}
"""


def issue(title: str, date: str, body: str = "Body text.", *, draft: bool = False) -> str:
    front = f'title: "{title}"\ndate: {date}\n' + ("draft: true\n" if draft else "")
    return f"---\n{front}---\n{textwrap.dedent(body)}\n"


def make_project(
    root: Path, files: dict[str, str], *, group_by: str = "week", extra: str = ""
) -> Config:
    (root / "config.toml").write_text(CONFIG.format(group_by=group_by, extra=extra), "utf-8")
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return load_config(root)


def email_template(root: Path, old: str, new: str) -> None:
    """A project override of email.mjml.j2: the packaged one with one edit."""
    source = (PACKAGE_TEMPLATES / "email.mjml.j2").read_text(encoding="utf-8")
    assert old in source
    (root / "templates").mkdir(exist_ok=True)
    (root / "templates" / "email.mjml.j2").write_text(source.replace(old, new), "utf-8")


def findings(result: CheckResult, text: str) -> list[Finding]:
    return [f for f in result.findings if text in f.problem.message]


def only(result: CheckResult, text: str) -> Finding:
    found = findings(result, text)
    assert len(found) == 1, [str(f) for f in result.findings]
    return found[0]


def test_a_clean_edition_has_no_findings(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/a.md": issue("Alpha", "2024-04-29", "See [Beta](#beta) and [home](/)."),
            "issues/beta.md": issue(
                "Beta", "2024-04-30", "![A chart](https://cdn.example.org/c.png)"
            ),
        },
    )
    result = run_checks(config, now=NOW)
    assert result.findings == []
    assert (result.editions, result.issues) == (1, 2)


def test_email_over_102_kb_is_a_warning(tmp_path: Path) -> None:
    long = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum dolor sit amet " * 20 for n in range(250))
    config = make_project(tmp_path, {"issues/long.md": issue("Long", "2024-04-29", long)})
    f = only(run_checks(config, now=NOW), "Gmail clips")
    assert f.level == "warning"
    assert f.problem.path == "issues/long.md"
    assert f.problem.message.startswith("edition 1: email HTML is ")
    assert int(f.problem.message.split(" is ")[1].split(" KB")[0]) > GMAIL_CLIP_BYTES // 1024


def test_the_size_warning_names_the_file_that_makes_the_email_large(tmp_path: Path) -> None:
    # The big file is neither the first issue of the edition nor the first by name.
    long = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum dolor sit amet " * 20 for n in range(250))
    files = {
        "issues/a-small.md": issue("Small", "2024-04-29", "Short."),
        "issues/m-big.md": issue("Big", "2024-04-30", long),
        "issues/z-small.md": issue("Small too", "2024-05-01", "Short too."),
    }
    config = make_project(tmp_path, files)
    f = only(run_checks(config, now=NOW), "Gmail clips")
    assert f.problem.path == "issues/m-big.md"
    assert "the largest part is this file, 1" in f.problem.message  # 1xx KB of it


def test_image_without_alt_text_names_the_issue_line(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/img.md": issue(
                "Images", "2024-04-29", "Intro.\n\n![](https://cdn.example.org/plot.png)\n"
            )
        },
    )
    f = only(run_checks(config, now=NOW), "image without alt text")
    assert (f.level, f.problem.path, f.problem.line) == ("warning", "issues/img.md", 7)
    assert (
        f.problem.message == "edition 1: image without alt text: https://cdn.example.org/plot.png"
    )


def test_localhost_links_and_images_are_errors(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/local.md": issue(
                "Local",
                "2024-04-29",
                "Try [the demo](http://localhost:8000/demo).\n\n![chart](http://127.0.0.1/c.png)\n",
            )
        },
    )
    result = run_checks(config, now=NOW)
    link, image = findings(result, "local address")
    assert str(link) == (
        "issues/local.md:5: edition 1: link on a local address: http://localhost:8000/demo"
    )
    assert (
        str(image) == "issues/local.md:7: edition 1: image on a local address: "
        "http://127.0.0.1/c.png"
    )


def test_relative_link_in_a_template_names_the_template(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"issues/a.md": issue("A", "2024-04-29")})
    email_template(tmp_path, '<a href="{{ urls.home }}">', '<a href="about.html">')
    f = only(run_checks(config, now=NOW), "relative link")
    assert f.level == "error"
    assert f.problem.path == "templates/email.mjml.j2"
    assert (
        f.problem.line is not None
        and "about.html"
        in (tmp_path / "templates/email.mjml.j2")
        .read_text("utf-8")
        .splitlines()[f.problem.line - 1]
    )
    assert (
        f.problem.message == "edition 1: relative link (a mail client has no page to "
        "resolve it against): about.html"
    )


def test_broken_internal_links(tmp_path: Path) -> None:
    (tmp_path / "issues" / "fig").mkdir(parents=True)
    (tmp_path / "issues" / "fig" / "ok.png").write_bytes(b"\x89PNG")
    config = make_project(
        tmp_path,
        {
            "issues/old.md": issue("Old", "2024-04-22"),
            "issues/links.md": issue(
                "Links",
                "2024-04-29",
                """\
            Last week: [fine](/editions/1/), [missing](/editions/99/).

            ![there](fig/ok.png) ![not there](fig/missing.png)

            [nowhere](#nowhere) and [the old one](/editions/1/#intro).
            """,
            ),
        },
    )
    result = run_checks(config, now=NOW)
    assert str(only(result, "no edition 99")) == (
        "issues/links.md:5: edition 2: broken internal link (there is no edition 99): "
        "https://news.example.org/editions/99/"
    )
    f = only(result, "does not publish")
    assert (f.level, f.problem.path, f.problem.line) == ("error", "issues/links.md", 7)
    assert (
        f.problem.message == "edition 2: broken internal image (the build does not "
        "publish this page or file): https://news.example.org/assets/fig/missing.png"
    )
    anchor = only(result, "broken anchor")
    assert (anchor.level, anchor.problem.path, anchor.problem.line) == (
        "warning",
        "issues/links.md",
        9,
    )
    assert anchor.problem.message.endswith("#nowhere")
    assert len(result.findings) == 3  # /editions/1/, fig/ok.png and another page's #intro pass


def test_missing_unsubscribe_link_names_the_template_and_edition(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"issues/a.md": issue("A", "2024-04-29")})
    email_template(tmp_path, '<a href="{{ unsubscribe_url }}">', '<a href="{{ urls.home }}">')
    f = only(run_checks(config, now=NOW), "no unsubscribe link")
    assert f.level == "error"
    assert f.problem.path == "templates/email.mjml.j2"
    assert f.problem.message.startswith("edition 1 ")


def test_lint_catches_a_rendered_edition_without_the_placeholder(tmp_path: Path) -> None:
    config = make_project(tmp_path, {"issues/a.md": issue("A", "2024-04-29")})
    grouping = load_and_group(config, now=NOW)
    rendered = EditionRenderer(config, grouping).render(grouping.editions[0])
    stripped = dataclasses.replace(
        rendered, email_text=rendered.email_text.replace(UNSUBSCRIBE_PLACEHOLDER, "")
    )
    result = CheckResult()
    lint_edition(config, stripped, result, NOW)
    f = only(result, "plain-text part has no unsubscribe link")
    assert (f.level, f.problem.path) == ("error", "newsletter/templates/email.txt.j2")


def test_empty_edition_subject_and_preheader(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {"issues/a.md": issue("A", "2024-04-29")},
        extra='subject = "{title}: ' + "x" * 90 + '"',
    )
    grouping = load_and_group(config, now=NOW)
    rendered = EditionRenderer(config, grouping).render(grouping.editions[0])
    empty = dataclasses.replace(
        rendered, edition=dataclasses.replace(rendered.edition, issues=(), preheader=" ")
    )
    result = CheckResult()
    lint_edition(config, empty, result, NOW)
    assert only(result, "edition is empty").level == "error"
    subject = only(result, "subject is")
    assert (subject.level, subject.problem.path) == ("warning", "config.toml")
    assert subject.problem.message.startswith(f"edition 1: subject is {len(rendered.subject)} ")
    assert str(only(result, "no preheader")) == "config.toml: edition 1: no preheader [warning]"


def test_unresolved_template_text_outside_code_is_an_error(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/t.md": issue(
                "T",
                "2024-04-29",
                """\
        Hello {{ first_name }}, and {% raw %}.

        In Jinja you write `{{ name }}`:

            {% if x %}…{% endif %}
        """,
            )
        },
    )
    result = run_checks(config, now=NOW)
    leftovers = findings(result, "unresolved template text")
    assert [str(f) for f in leftovers] == [
        "issues/t.md:5: edition 1: unresolved template text in the email HTML: '{{ first_name }}'",
        "issues/t.md:5: edition 1: unresolved template text in the email HTML: '{% raw %}'",
    ]


def test_future_dated_issue_in_the_edition_about_to_be_sent(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/now.md": issue("Now", "2024-05-01"),
            "issues/later.md": issue("Later", "2024-06-01"),
        },
        group_by="issue",
    )
    result = run_checks(config, now=NOW)
    f = only(result, "dated in the future")
    assert str(f) == (
        "issues/later.md:3: edition 2: issue is dated in the future "
        "(2024-06-01T00:00:00+00:00) [warning]"
    )


def test_drafts_inside_the_edition_about_to_be_sent(tmp_path: Path) -> None:
    config = make_project(
        tmp_path,
        {
            "issues/old.md": issue("Old", "2024-04-22"),
            "issues/old-draft.md": issue("Old draft", "2024-04-23", draft=True),
            "issues/done.md": issue("Done", "2024-04-29"),
            "issues/forgot.md": issue("Forgot", "2024-04-30", draft=True),
            "issues/open-draft.md": issue("Open draft", "2024-05-13", draft=True),
        },
    )
    with_drafts = run_checks(config, drafts=True, now=NOW)
    assert [str(f) for f in with_drafts.findings] == [
        "issues/forgot.md:4: edition 2: issue is still a draft in an edition about to be sent "
        "[warning]"
    ]
    without = run_checks(config, now=NOW)
    assert [str(f) for f in without.findings] == [
        "issues/forgot.md:4: edition 2: issue is still a draft, so the edition goes out "
        "without it [warning]"
    ]


def test_send_lints_its_edition_with_the_sending_checks(tmp_path: Path) -> None:
    """send.py calls lint_edition(config, rendered, result, now): the sending checks apply."""
    config = make_project(
        tmp_path,
        {
            "issues/old.md": issue("Old", "2024-04-22"),
            "issues/old-draft.md": issue("Old draft", "2024-04-23", draft=True),
            "issues/done.md": issue("Done", "2024-04-29"),
        },
    )
    grouping = load_and_group(config, now=NOW)
    first = grouping.editions[0]
    assert next_to_send(grouping.editions) == 2 != first.number
    result = CheckResult()
    lint_edition(config, EditionRenderer(config, grouping).render(first), result, NOW)
    assert [str(f) for f in result.findings] == [
        "issues/old-draft.md:4: edition 1: issue is still a draft, so the edition goes out "
        "without it [warning]"
    ]


def test_strict_turns_warnings_into_errors(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        {"issues/img.md": issue("Images", "2024-04-29", "![](https://cdn.example.org/plot.png)")},
    )
    runner = CliRunner()
    env = {"NEWSLETTER_NOW": NOW.isoformat()}
    relaxed = runner.invoke(cli, ["-C", str(tmp_path), "check"], env=env)
    assert relaxed.exit_code == 0, relaxed.output
    assert "1 warning(s)" in relaxed.output
    strict = runner.invoke(cli, ["-C", str(tmp_path), "check", "--strict"], env=env)
    assert strict.exit_code == 1
    assert "issues/img.md:5: edition 1: image without alt text" in strict.output


def test_the_sample_project_only_warns_about_its_forgotten_draft(tmp_path: Path) -> None:
    """No false positives on real content: TOC anchors, archive links, assets, unsubscribe."""
    for name in ("config.toml", "editions.lock"):
        shutil.copy2(REPO / name, tmp_path / name)
    for name in ("issues", "editions"):
        shutil.copytree(REPO / name, tmp_path / name)
    config = load_config(tmp_path)
    now = datetime(2024, 5, 10, tzinfo=UTC)
    assert [str(f) for f in run_checks(config, now=now).findings] == [
        "issues/2024/2024-04-30-chain-of-thought.md:10: edition 4: issue is still a draft, "
        "so the edition goes out without it [warning]"
    ]
    assert all(
        str(f).split(": ")[1].startswith("edition ")
        for f in run_checks(config, drafts=True, now=now).findings
    )


@pytest.mark.parametrize(
    "level,strict,expected", [("warning", False, 0), ("warning", True, 1), ("error", False, 1)]
)
def test_errors_count(level: str, strict: bool, expected: int) -> None:
    result = CheckResult()
    result.add(level, "issues/a.md", 1, "edition 1: something")
    assert result.errors(strict=strict) == expected
