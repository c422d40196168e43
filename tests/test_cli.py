"""The command line: thin commands, user errors as `path:line: message` with exit 1."""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from newsletter.cli import cli
from tests.conftest import MakeProject, issue

ENV = {"NEWSLETTER_NOW": "2024-06-01T00:00:00+00:00"}


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["-C", str(root), *args], env=ENV)
    return result.exit_code, result.stdout, result.stderr


def test_build_editions_and_check(make_project: MakeProject):
    config = make_project({"issues/a.md": issue("A", "2024-04-09", url="https://x.org/a")})
    code, out, _ = run(config.root, "build")
    assert code == 0 and "1 editions: 1 rendered" in out
    code, out, _ = run(config.root, "build")
    assert code == 0 and "up to date" in out
    code, out, _ = run(config.root, "editions", "--json")
    assert json.loads(out) == [
        {
            "number": 1,
            "key": "2024-W15",
            "title": "Test Digest #1",
            "start": "2024-04-08",
            "end": "2024-04-14",
            "items": 1,
            "state": "published",
            "subject": "Test Digest #1",
            "preheader": "2024-04-08 to 2024-04-14",
        }
    ]
    code, out, err = run(config.root, "check")
    assert code == 0 and out.startswith("ok: 1 editions, 1 issue files checked"), (out, err)


def test_check_reports_all_bad_files_without_traceback(make_project: MakeProject):
    config = make_project(
        {
            "issues/a.md": "---\ntitle: A\n---\nno date\n",
            "issues/b.md": '---\ntitle: "B"\ndate: soon\n---\n',
            "issues/c.md": "no front matter at all\n",
        }
    )
    code, _out, err = run(config.root, "check")
    assert code == 1
    assert "Traceback" not in err
    lines = err.splitlines()
    assert any(line.startswith("issues/a.md:1:") for line in lines), err
    assert any(line.startswith("issues/b.md:3:") for line in lines), err
    assert any(line.startswith("issues/c.md:1:") for line in lines), err


def test_build_error_exit_code_in_a_real_process(make_project: MakeProject):
    config = make_project({"issues/a.md": "---\ntitle: [x\n---\n"})
    proc = subprocess.run(
        [sys.executable, "-m", "newsletter", "-C", str(config.root), "build"],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("issues/a.md:")
    assert "Traceback" not in proc.stderr


def test_new_creates_an_issue_and_never_overwrites(make_project: MakeProject):
    config = make_project()
    code, out, _ = run(
        config.root,
        "new",
        "Mamba: Linear-Time Sequence Modeling",
        "--url",
        "https://arxiv.org/abs/2312.00752",
    )
    assert code == 0
    first = config.root / out.strip()
    assert first.is_file() and "https://arxiv.org/abs/2312.00752" in first.read_text()
    code, out2, _ = run(config.root, "new", "Mamba: Linear-Time Sequence Modeling")
    assert code == 0 and out2.strip() != out.strip()
    code, _, _ = run(config.root, "check")
    assert code == 0


def test_init_scaffolds_and_refuses_to_overwrite(tmp_path: Path):
    target = tmp_path / "digest"
    code, out, _ = run(tmp_path, "init", str(target))
    assert code == 0 and "config.toml" in out
    code, out, _ = run(target, "build")
    assert code == 0, out
    assert (target / "public" / "feed.xml").is_file()
    before = (target / "config.toml").read_text()
    code, _, err = run(tmp_path, "init", str(target))
    assert code == 1 and "never overwrites" in err
    assert (target / "config.toml").read_text() == before


def test_help_is_available_for_every_command():
    for name in cli.commands:  # type: ignore[attr-defined]
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, name


def test_every_command_is_documented_in_the_readme():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    for name in cli.commands:  # type: ignore[attr-defined]
        assert f"newsletter {name}" in readme, f"`newsletter {name}` is not in README.md"


def test_subscribers_commands_round_trip(make_project: MakeProject, tmp_path: Path):
    config = make_project()
    code, out, _ = run(
        config.root, "subscribers", "add", "Ada@Example.org", "--name", "Ada", "--tag", "ml"
    )
    assert code == 0 and out.strip() == "Ada@Example.org: active"
    code, _, err = run(config.root, "subscribers", "add", "ada@example.org")
    assert code == 1 and "Traceback" not in err
    csv = tmp_path / "readers.csv"
    csv.write_text(
        "email,name,tags\nbob@example.org,Bob,\nnot-an-address,X,\n"
        'carol@example.org,"Carol, PhD",ml;cv\n',
        encoding="utf-8",
    )
    code, out, err = run(config.root, "subscribers", "import", str(csv))
    assert code == 1  # bad rows are reported (and the good ones imported)
    assert f"{csv}:3:" in err
    assert "2 added" in out
    code, out, _ = run(config.root, "subscribers", "count")
    assert "active\t3" in out and "total\t3" in out
    code, out, _ = run(config.root, "subscribers", "list")
    assert [line.split("\t")[0] for line in out.splitlines()] == [
        "Ada@Example.org",
        "bob@example.org",
        "carol@example.org",
    ]
    code, out, _ = run(config.root, "subscribers", "export")
    assert out.splitlines()[0].startswith("email,name,tags,status")
    assert '"Carol, PhD"' in out
    code, out, _ = run(config.root, "subscribers", "remove", "BOB@example.org")
    assert code == 0
    code, out, _ = run(config.root, "subscribers", "count")
    assert "total\t2" in out


def test_editions_json_shows_the_subject_and_preheader_exactly_as_sent(
    make_project: MakeProject,
):
    config = make_project(
        {
            "issues/a.md": issue("A", "2024-04-09", url="https://x.org/a"),
            "editions/2024-W15.md": (
                '---\nsubject: "Ünïcode & <angles>: a long subject"\n'
                'preheader: "Über die Präferenzen"\n---\nHello.\n'
            ),
        }
    )
    code, out, _ = run(config.root, "editions", "--json")
    assert code == 0
    [row] = json.loads(out)
    run(config.root, "subscribers", "add", "ada@example.org")
    env = {**ENV, "NEWSLETTER_SECRET": "cli-test-secret-0123456789"}
    sent = CliRunner().invoke(cli, ["-C", str(config.root), "send", "1", "--yes"], env=env)
    assert sent.exit_code == 0, sent.output
    [path] = (config.root / "outbox" / "new").iterdir()
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert row["subject"] == str(message["Subject"]) == "Ünïcode & <angles>: a long subject"
    html = message.get_body(("html",))
    assert html is not None and row["preheader"] in html.get_content()


def test_build_summary_adds_up_after_check_rendered_some_editions(make_project: MakeProject):
    files = {
        "issues/a.md": issue("A", "2024-04-09", url="https://x.org/a"),
        "issues/b.md": issue("B", "2024-04-16", url="https://x.org/b"),
        "issues/c.md": issue("C", "2024-04-23", url="https://x.org/c"),
    }
    config = make_project(files)
    assert run(config.root, "check")[0] == 0  # renders every edition into the render cache
    (config.root / "issues" / "d.md").write_text(issue("D", "2024-04-30"), encoding="utf-8")
    code, out, _ = run(config.root, "build")
    # Editions 1 and 2 come from check's render cache; 3 gains a "next" link and 4 is new.
    assert code == 0 and "4 editions: 2 rendered, 2 from the render cache, 0 unchanged" in out


def test_send_needs_confirmation_and_reports(make_project: MakeProject):
    config = make_project({"issues/a.md": issue("A", "2024-04-09", url="https://x.org/a")})
    run(config.root, "subscribers", "add", "ada@example.org")
    env = {**ENV, "NEWSLETTER_SECRET": "cli-test-secret-0123456789"}
    result = CliRunner().invoke(cli, ["-C", str(config.root), "send", "1"], env=env)
    assert result.exit_code == 1 and "pass --yes" in result.stderr
    result = CliRunner().invoke(cli, ["-C", str(config.root), "send", "1", "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert "edition 1: 1 recipients = 1 sent + 0 failed + 0 pending + 0 suppressed" in result.stdout
    outbox = list((config.root / "outbox" / "new").iterdir())
    assert len(outbox) == 1 and b"ada@example.org" in outbox[0].read_bytes()
    code, out, _ = run(config.root, "status", "1")
    assert code == 0 and "1 sent" in out
