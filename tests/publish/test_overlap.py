"""Overlapping builds of one site: whole trees only, `public/` present at every instant."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from newsletter.config import Config
from newsletter.pipeline import build
from newsletter.publish import writer
from newsletter.publish.lock import build_lock
from tests.conftest import MakeProject, issue

NOW = "2024-06-01T00:00:00+00:00"
FILES = {
    f"issues/{n}.md": issue(
        f"Paper {n}", f"2024-04-{day:02d}", f"Body {n}.", url=f"https://x.org/{n}"
    )
    for n, day in (("a", 9), ("b", 16), ("c", 23), ("d", 30))
}
EDITIONS = 4


@pytest.fixture
def site(make_project: MakeProject, frozen_now: object) -> Config:
    return make_project(FILES)


def _start_build(root: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "-C", str(root), "build"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "NEWSLETTER_NOW": NOW},
    )


def _complete(out: Path) -> bool:
    pages = [out / "index.html", out / "feed.xml"]
    pages += [out / "editions" / str(n) / "index.html" for n in range(1, EDITIONS + 1)]
    return all(p.is_file() and p.stat().st_size > 0 for p in pages)


class Watcher(threading.Thread):
    """Polls the output folder as a web server would and counts every incomplete look."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out, self.looks, self.broken = out, 0, 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.looks += 1
            if not _complete(self.out):
                self.broken += 1


def test_builds_started_together_in_a_loop_never_show_a_broken_site(site: Config) -> None:
    first = _start_build(site.root)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    watcher = Watcher(site.out_dir)
    watcher.start()
    try:
        for round_ in range(4):
            # A changed issue makes both builds rewrite an edition, the index and the feeds.
            path = site.root / "issues" / "a.md"
            path.write_text(issue("Paper a", "2024-04-09", f"Round {round_}."), encoding="utf-8")
            builds = [_start_build(site.root), _start_build(site.root)]
            for proc in builds:
                out, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err
                assert "4 editions" in out
    finally:
        watcher.stop.set()
        watcher.join()
    assert watcher.looks > 100  # the watcher really looked while the builds ran
    assert watcher.broken == 0
    assert "Round 3." in (site.out_dir / "editions" / "1" / "index.html").read_text("utf-8")
    leftovers = sorted(p.name for p in site.root.iterdir() if p.name.startswith(".public"))
    assert leftovers == []  # no staging or .old tree left behind


def test_a_second_build_waits_for_the_first_and_says_so(site: Config) -> None:
    messages: list[str] = []
    done = threading.Event()

    def second() -> None:
        build(site, on_wait=messages.append)
        done.set()

    with build_lock(site.state_dir, site.out_dir):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        assert not done.is_set()  # it waits while the lock is held
        assert messages and messages[0].startswith("waiting for another build of ")
        assert f"(pid {os.getpid()})" in messages[0]
    thread.join(timeout=60)
    assert done.is_set() and _complete(site.out_dir)


def test_every_written_file_is_on_disk_before_the_swap(
    site: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: set[str] = set()
    written: list[str] = []
    real_fsync, real_write, real_commit = (
        os.fsync,
        writer.SiteWriter.write,
        writer.SiteWriter.commit,
    )
    swapped_after: list[set[str]] = []

    def fsync(fd: int) -> None:
        synced.add(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    def write(self: writer.SiteWriter, rel: str, data: bytes | str) -> None:
        real_write(self, rel, data)
        written.append(str(self.staging / rel))

    def commit(self: writer.SiteWriter) -> None:
        swapped_after.append(set(synced))
        real_commit(self)

    monkeypatch.setattr(writer.os, "fsync", fsync)
    monkeypatch.setattr(writer.SiteWriter, "write", write)
    monkeypatch.setattr(writer.SiteWriter, "commit", commit)
    build(site)
    assert len(written) >= 3 * EDITIONS + 4
    [before_swap] = swapped_after
    assert [p for p in written if p not in before_swap] == []


def test_the_swap_keeps_the_folder_in_place(site: Config) -> None:
    build(site)
    inode = (site.out_dir / "editions").stat().st_ino
    (site.root / "issues" / "b.md").write_text(issue("Paper b", "2024-04-16", "New."), "utf-8")
    build(site)
    # A new tree was swapped in (not edited in place) ...
    assert (site.out_dir / "editions").stat().st_ino != inode
    assert "New." in (site.out_dir / "editions" / "2" / "index.html").read_text("utf-8")
    # ... and the previous one is gone.
    assert not list(site.root.glob(".public.staging*")) and not (site.root / ".public.old").exists()


def test_a_killed_builds_staging_tree_is_removed_by_the_next(site: Config) -> None:
    stale = site.root / ".public.staging-killed"
    (stale / "editions").mkdir(parents=True)
    (stale / "editions" / "half.html").write_text("half", "utf-8")
    build(site)
    assert not stale.exists() and _complete(site.out_dir)
