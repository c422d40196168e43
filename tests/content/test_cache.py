"""IssueCache: unchanged files are not read, edited files are, damage means a cold cache."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import pytest

from newsletter.config import Config
from newsletter.content import IssueCache, load_issues
from newsletter.content import issues as issues_module
from newsletter.errors import ContentError
from tests.content import CONFIG, issue, make_project

LONG_AGO = time.time() - 3600  # older than the racy window, so size+mtime are trusted


class Counter:
    """Counts file reads and parses done by load_issues."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[str] = []
        self.parses: list[str] = []
        read, parse = issues_module._read, issues_module.parse_issue

        def counting_read(path: Path) -> bytes:
            self.reads.append(path.name)
            return read(path)

        def counting_parse(data: bytes, path: str, **kwargs: object) -> object:
            self.parses.append(path)
            return parse(data, path, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(issues_module, "_read", counting_read)
        monkeypatch.setattr(issues_module, "parse_issue", counting_parse)

    def reset(self) -> None:
        self.reads.clear()
        self.parses.clear()


def write(config: Config, name: str, text: str, mtime: float = LONG_AGO) -> None:
    path = config.root / "issues" / name
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))


@pytest.fixture
def project(tmp_path: Path) -> Config:
    config = make_project(tmp_path, {})
    (tmp_path / "issues").mkdir()
    for n in range(3):
        write(config, f"i{n}.md", issue(f"title: Issue {n}\ndate: 2024-01-0{n + 1}\n"))
    return config


def test_second_load_reads_no_file_contents(
    project: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = Counter(monkeypatch)
    first = load_issues(project, cache=IssueCache.for_config(project))
    assert sorted(counter.reads) == ["i0.md", "i1.md", "i2.md"]
    assert (project.state_dir / "cache" / "issues.pickle").is_file()
    counter.reset()
    again = load_issues(project, cache=IssueCache.for_config(project))
    assert counter.reads == [] and counter.parses == []
    assert again == first


def test_an_edited_file_is_read_and_parsed_again(
    project: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_issues(project, cache=IssueCache.for_config(project))
    write(project, "i1.md", issue("title: Edited\ndate: 2024-01-02\n"), LONG_AGO + 10)
    counter = Counter(monkeypatch)
    loaded = load_issues(project, cache=IssueCache.for_config(project))
    assert counter.reads == ["i1.md"] and counter.parses == ["issues/i1.md"]
    assert [i.title for i in loaded] == ["Issue 0", "Edited", "Issue 2"]


def test_a_touched_file_is_read_but_not_parsed(
    project: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_issues(project, cache=IssueCache.for_config(project))
    os.utime(project.root / "issues" / "i2.md", (LONG_AGO + 20, LONG_AGO + 20))
    counter = Counter(monkeypatch)
    load_issues(project, cache=IssueCache.for_config(project))
    assert counter.reads == ["i2.md"] and counter.parses == []
    counter.reset()
    load_issues(project, cache=IssueCache.for_config(project))  # new mtime was saved
    assert counter.reads == []


def test_same_size_same_mtime_edit_is_caught_while_racy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A coarse-timestamp file system can keep the mtime across an edit: recent files are
    # re-hashed instead of trusted.
    config = make_project(tmp_path, {})
    (tmp_path / "issues").mkdir()
    now = time.time()
    write(config, "a.md", issue("title: AAAA\ndate: 2024-01-01\n"), now)
    load_issues(config, cache=IssueCache.for_config(config))
    write(config, "a.md", issue("title: BBBB\ndate: 2024-01-01\n"), now)
    [loaded] = load_issues(config, cache=IssueCache.for_config(config))
    assert loaded.title == "BBBB"


def test_deleted_files_leave_the_cache(project: Config) -> None:
    load_issues(project, cache=IssueCache.for_config(project))
    (project.root / "issues" / "i0.md").unlink()
    cache = IssueCache.for_config(project)
    assert [i.slug for i in load_issues(project, cache=cache)] == ["i1", "i2"]
    assert sorted(IssueCache.for_config(project).entries) == ["issues/i1.md", "issues/i2.md"]


def test_unchanged_cache_is_not_rewritten(project: Config) -> None:
    load_issues(project, cache=IssueCache.for_config(project))
    cache = IssueCache.for_config(project)
    load_issues(project, cache=cache)
    assert not cache.dirty and cache.save() is False


@pytest.mark.parametrize(
    "damage", [b"", b"garbage", pickle.dumps({"salt": 1}), pickle.dumps(["not", "a", "dict"])]
)
def test_a_damaged_cache_is_ignored(
    project: Config, damage: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project.state_dir / "cache" / "issues.pickle"
    path.parent.mkdir(parents=True)
    path.write_bytes(damage)
    counter = Counter(monkeypatch)
    assert len(load_issues(project, cache=IssueCache.for_config(project))) == 3
    assert len(counter.reads) == 3
    assert pickle.loads(path.read_bytes())["salt"] == IssueCache.for_config(project).salt


def test_a_truncated_cache_is_ignored(project: Config) -> None:
    load_issues(project, cache=IssueCache.for_config(project))
    path = project.state_dir / "cache" / "issues.pickle"
    path.write_bytes(path.read_bytes()[:100])
    assert len(load_issues(project, cache=IssueCache.for_config(project))) == 3


def test_a_config_change_invalidates_the_cache(project: Config) -> None:
    text = issue("title: T\ndate: 2024-01-01\nimage: a.png\n")
    write(project, "i0.md", text)
    load_issues(project, cache=IssueCache.for_config(project))
    moved = make_project(project.root, {}, CONFIG.replace("example.org", "example.net"))
    assert IssueCache.for_config(moved).salt != IssueCache.for_config(project).salt
    first = load_issues(moved, cache=IssueCache.for_config(moved))[0]
    assert first.image == "https://example.net/digest/assets/a.png"


def test_broken_files_are_not_cached_and_still_reported(
    project: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(project, "bad.md", issue("title: T\ndate: never\n"))
    for _ in range(2):
        with pytest.raises(ContentError) as info:
            load_issues(project, cache=IssueCache.for_config(project))
        assert [str(p)[:21] for p in info.value.problems] == ["issues/bad.md:3: date"]
    assert "issues/bad.md" not in IssueCache.for_config(project).entries
    assert len(IssueCache.for_config(project).entries) == 3  # the good ones were saved
