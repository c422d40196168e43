"""Deterministic benchmark corpus: ML-paper digest issues (Chinese and English) and subscribers."""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

SEED = 20240601
FIRST_MONDAY = date(2019, 1, 7)
PER_WEEK = 20
TZ = "Asia/Shanghai"

CONFIG = """\
[newsletter]
title = "ML 论文周报"
description = "每周精选的机器学习论文：作者、会议、论文与代码链接，以及一段概要。"
base_url = "https://papers.example.org/"
language = "zh-CN"
timezone = "Asia/Shanghai"
author = "ML 论文周报编辑部"
email = "digest@papers.example.org"

[editions]
group_by = "{group_by}"
title = "ML 论文周报 第{{number}}期"
subject = "{{title}}：{{start:%m.%d}}–{{end:%m.%d}} 的 {{count}} 篇论文"
section_by = "tag"
section_order = ["大语言模型", "推理与对齐", "多模态", "智能体", "高效训练与推理"]

[email]
from = "ML 论文周报 <digest@papers.example.org>"
reply_to = "editors@papers.example.org"
unsubscribe_mailto = "unsubscribe@papers.example.org"

[build]
feed_limit = 50

[sender]
kind = "{sender}"
concurrency = {concurrency}
batch_size = {batch_size}
{extra}
"""

SECTIONS = ["大语言模型", "推理与对齐", "多模态", "智能体", "高效训练与推理", "强化学习"]
TOPICS_EN = [
    "sparse attention",
    "reward modelling",
    "speculative decoding",
    "vision encoders",
    "tool use",
    "preference optimisation",
    "long context",
    "mixture of experts",
    "quantisation",
    "retrieval",
    "curriculum learning",
    "self-play",
    "distillation",
    "state-space models",
    "process supervision",
    "data curation",
]
TOPICS_ZH = [
    "稀疏注意力",
    "奖励模型",
    "投机解码",
    "视觉编码器",
    "工具调用",
    "偏好优化",
    "长上下文",
    "混合专家",
    "量化",
    "检索增强",
    "课程学习",
    "自我博弈",
    "知识蒸馏",
    "状态空间模型",
    "过程监督",
    "数据筛选",
]
NOUNS = [
    "transformer",
    "benchmark",
    "baseline",
    "ablation",
    "tokenizer",
    "optimizer",
    "dataset",
    "checkpoint",
    "gradient",
    "policy",
    "encoder",
    "decoder",
    "loss",
    "scaling law",
]
VERBS = ["improves", "reduces", "matches", "outperforms", "stabilises", "simplifies", "extends"]
ZH_PHRASES = [
    "在多个基准上",
    "训练成本大幅下降",
    "作者公开了代码与权重",
    "推理速度提升明显",
    "消融实验表明",
    "这一设计的关键在于",
    "与此前的方法相比",
    "在长序列任务上",
    "模型规模从 7B 扩展到 70B",
    "数据质量比数量更重要",
    "可以直接替换现有模块",
    "我们认为值得关注的是",
    "结果在不同随机种子下都很稳定",
    "该方法对超参数并不敏感",
]
VENUES = ["NeurIPS", "ICML", "ICLR", "ACL", "EMNLP", "CVPR", "arXiv"]
FIRST = ["Ada", "Wei", "Li", "Maria", "Jun", "Sara", "Tom", "Yuki", "Omar", "Chen", "Ivan", "Mei"]
LAST = ["Zhang", "Smith", "Wang", "Garcia", "Liu", "Müller", "Tanaka", "Khan", "Chen", "Rossi"]


@dataclass(frozen=True)
class Corpus:
    """Where a generated project lives and what it holds."""

    root: Path
    files: int
    weeks: int

    def issue_paths(self) -> list[Path]:
        return sorted((self.root / "issues").rglob("*.md"))


def _en_sentence(rng: random.Random) -> str:
    topic = rng.choice(TOPICS_EN)
    return (
        f"The {rng.choice(NOUNS)} {rng.choice(VERBS)} {topic} by {rng.randint(2, 40)}% "
        f"on {rng.choice(NOUNS)}s at {rng.choice(['1B', '7B', '13B', '70B'])} scale, "
        f"while the {rng.choice(NOUNS)} stays {rng.choice(['fixed', 'frozen', 'shared'])}."
    )


def _zh_sentence(rng: random.Random) -> str:
    return (
        "，".join(rng.sample(ZH_PHRASES, 3)) + f"，{rng.choice(TOPICS_ZH)}的效果提升了 "
        f"{rng.randint(2, 40)}%。"
    )


def _body(rng: random.Random, zh: bool, n: int) -> str:
    """1.5–3 KB of Markdown: paragraphs, a list, a table, links and sometimes a footnote."""
    sentence = _zh_sentence if zh else _en_sentence
    target = rng.randint(1500, 3000)
    parts = [
        " ".join(sentence(rng) for _ in range(3))
        + f" See [the paper](https://arxiv.org/abs/{2300 + n % 100}.{10000 + n:05d})."
    ]
    parts.append("\n".join(f"- **{rng.choice(NOUNS)}**: {sentence(rng)}" for _ in range(3)))
    rows = "\n".join(
        f"| {rng.choice(NOUNS)} | {rng.uniform(10, 90):.1f} | {rng.uniform(10, 90):.1f} |"
        for _ in range(4)
    )
    parts.append(
        ("| 方法 | 基线 | 本文 |" if zh else "| Method | Baseline | Ours |")
        + "\n| --- | ---: | ---: |\n"
        + rows
    )
    footnote = rng.random() < 0.3
    while len("\n\n".join(parts).encode()) < target - 200:
        extra = " ".join(sentence(rng) for _ in range(2))
        if rng.random() < 0.3:
            extra += f" Code: <https://github.com/example/repo-{n}>."
        parts.append(extra)
    if footnote:
        parts[-1] += "[^1]"
        parts.append("[^1]: " + sentence(rng))
    return "\n\n".join(parts) + "\n"


def _title(rng: random.Random, zh: bool, n: int) -> str:
    if zh:
        return f"{rng.choice(TOPICS_ZH)}：{rng.choice(ZH_PHRASES)}（第 {n} 篇）"
    topic = rng.choice(TOPICS_EN).title()
    return f"{topic}: How {rng.choice(NOUNS).title()}s {rng.choice(VERBS).title()} It ({n})"


def issue_text(n: int, when: datetime, rng: random.Random) -> tuple[str, str]:
    """(file name, text) of issue number ``n``; about half are Chinese."""
    zh = rng.random() < 0.5
    title = _title(rng, zh, n)
    authors = ", ".join(f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(rng.randint(2, 6)))
    tags = [rng.choice(SECTIONS), rng.choice(TOPICS_ZH if zh else TOPICS_EN)]
    summary = _zh_sentence(rng) if zh else _en_sentence(rng)
    lines = [
        "---",
        f'title: "{title}"',
        f"date: {when.isoformat()}",
        f"url: https://arxiv.org/abs/{2300 + n % 100}.{10000 + n:05d}",
        f"authors: [{authors}]",
        f"venue: {rng.choice(VENUES)}",
        f"year: {when.year}",
        f"tags: [{', '.join(tags)}]",
        f'summary: "{summary}"',
    ]
    if rng.random() < 0.5:
        lines.append(f"code: https://github.com/example/repo-{n}")
    lines += ["---", _body(rng, zh, n)]
    slug = "paper" if zh else re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40]
    return f"{when:%Y-%m-%d}-{slug}-{n}.md", "\n".join(lines)


def issue_dates(files: int, per_week: int = PER_WEEK) -> Iterator[datetime]:
    """``per_week`` issues per week, Monday to Friday, 09:00–18:00 Shanghai time (as +08:00)."""
    from datetime import timezone

    tz = timezone(timedelta(hours=8))
    for n in range(files):
        week, k = divmod(n, per_week)
        day = FIRST_MONDAY + timedelta(weeks=week, days=k % 5)
        yield datetime(day.year, day.month, day.day, 9 + k % 9, (k * 7) % 60, tzinfo=tz)


def make_project(
    root: Path,
    files: int,
    *,
    per_week: int = PER_WEEK,
    sender: str = "outbox",
    concurrency: int = 4,
    batch_size: int = 100,
    extra: str = "",
    group_by: str = "week",
) -> Corpus:
    """Write config.toml and ``files`` issue files under ``root`` (same seed, same bytes)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.toml").write_text(
        CONFIG.format(
            sender=sender,
            concurrency=concurrency,
            batch_size=batch_size,
            extra=extra,
            group_by=group_by,
        ),
        encoding="utf-8",
    )
    rng = random.Random(SEED)
    for n, when in enumerate(issue_dates(files, per_week)):
        name, text = issue_text(n, when, rng)
        folder = root / "issues" / str(when.year)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return Corpus(root, files, (files + per_week - 1) // per_week)


def edit_issue(path: Path, stamp: str) -> None:
    """Change one issue's body, as an editor fixing a typo would (size and content change)."""
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.rstrip("\n") + f"\n\nUpdate: corrected figures ({stamp}).\n", encoding="utf-8"
    )


# -- Pelican's view of the same Markdown -------------------------------------------------------

_FRONT = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def pelican_copy(src: Path, dst: Path) -> int:
    """The same issues with Pelican-style metadata lines instead of YAML front matter."""
    count = 0
    for path in sorted((src / "issues").rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        m = _FRONT.match(text)
        if m is None:
            continue
        meta: dict[str, str] = {}
        for line in m.group(1).splitlines():
            key, _, value = line.partition(": ")
            meta[key] = value.strip().strip('"').strip("[]")
        when = datetime.fromisoformat(meta["date"])
        head = [
            f"Title: {meta['title']}",
            f"Date: {when:%Y-%m-%d %H:%M}",
            f"Tags: {meta['tags']}",
            f"Category: {meta['tags'].split(',')[0]}",
            f"Authors: {meta['authors'].replace(', ', '; ')}",
            f"Summary: {meta['summary']}",
            f"Slug: {path.stem}",
        ]
        out = dst / "content" / path.parent.name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(head) + "\n\n" + text[m.end() :], encoding="utf-8")
        count += 1
    return count


# -- subscribers -------------------------------------------------------------------------------


def subscriber_rows(count: int) -> Iterator[tuple[str, str, str, str, str, str, str, str]]:
    """Rows for the subscribers table: deterministic addresses, a third with display names."""
    stamp = datetime(2024, 1, 1, tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.000000")
    for i in range(count):
        email = f"reader{i:07d}@example.org"
        name = f"{FIRST[i % len(FIRST)]} {LAST[i % len(LAST)]}" if i % 3 == 0 else ""
        yield email, email, name, "", "active", "bench", stamp, stamp


def fill_subscribers(db_path: Path, count: int) -> None:
    """Insert ``count`` active subscribers with one executemany (not part of any measurement).

    The schema comes from ``newsletter.state.open_database`` (migrations); rows go in through
    sqlite3 directly because validating a million addresses would take minutes.
    """
    from newsletter.state.db import open_database

    open_database(f"sqlite:///{db_path}").close()
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(
            "INSERT INTO subscribers (email, email_key, name, tags, status, source, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            subscriber_rows(count),
        )
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def subscriber_db(work: Path, count: int) -> Path:
    """A state database holding ``count`` subscribers, made once and reused (copy it to write)."""
    path = work / f"subscribers-{count}.db"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
        fill_subscribers(tmp, count)
        for side in (Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            side.unlink(missing_ok=True)  # checkpointed: the main file holds every row
        tmp.replace(path)
    return path


def fresh_state(template: Path, root: Path) -> Path:
    """Copy a subscriber database into a project's state dir, with an empty ledger."""
    import shutil

    state = root / ".newsletter"
    state.mkdir(parents=True, exist_ok=True)
    target = state / "state.db"
    for old in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        old.unlink(missing_ok=True)
    shutil.copyfile(template, target)
    return target
