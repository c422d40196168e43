"""A second golden site in another locale (zh-CN, monthly, sections by tag), after pelican's
custom_locale output: dates, strings, CJK titles and sections, byte for byte."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from newsletter.pipeline import build
from tests.conftest import MakeProject, issue
from tests.helpers.golden import assert_golden, tree

NOW = datetime(2025, 7, 1, tzinfo=UTC)

CONFIG = """\
[newsletter]
title = "论文月报"
description = "每月精选的机器学习论文。"
base_url = "https://digest.example.org/zh/"
language = "zh-CN"
timezone = "Asia/Shanghai"
author = "编辑部"
email = "digest@example.org"

[editions]
group_by = "month"
title = "论文月报 第{number}期"
section_by = "tag"
section_order = ["对齐", "检索"]

[email]
from = "论文月报 <digest@example.org>"
unsubscribe_mailto = "unsubscribe@example.org"
"""

FILES = {
    "issues/2025/05-kto.md": issue(
        "用前景理论做对齐",
        "2025-05-06",
        "作者把**损失厌恶**写进目标函数：只需要“好/坏”标签，不需要成对偏好。",
        url="https://arxiv.org/abs/2402.01306",
        authors="[甲作者, 乙作者]",
        venue="ICML",
        year="2024",
        tags="[对齐, 偏好学习]",
        summary="不需要成对数据的偏好优化。",
    ),
    "issues/2025/05-rag.md": issue(
        "长上下文还需要检索吗",
        "2025-05-20",
        "比较了三种做法：\n\n1. 直接放进上下文\n2. 先检索再生成\n3. 两者结合\n\n结论见表。",
        url="https://example.org/papers/long-context-rag",
        tags="[检索]",
    ),
    "issues/2025/06-reward.md": issue(
        "奖励模型的过度优化",
        "2025-06-03",
        "代理奖励越高，真实质量先升后降（见[原文](https://example.org/reward)）。",
        url="https://example.org/papers/overoptimization",
        tags="[对齐]",
        summary="代理指标与真实目标的偏离。",
    ),
    "editions/2025-05.md": (
        "---\npreheader: 本期两篇：对齐与检索\n---\n五月的论文不多，但都值得细读。\n"
    ),
}


def test_golden_site_zh_cn(make_project: MakeProject, request: pytest.FixtureRequest) -> None:
    config = make_project(FILES, config=CONFIG)
    build(config, now=NOW)
    got = tree(config.out_dir)
    # Guards against a golden set that silently lost its locale.
    index = got["index.html"].decode("utf-8")
    assert 'lang="zh-CN"' in index and "论文月报 第1期" in index
    assert_golden(got, "site-zh-CN", request)
