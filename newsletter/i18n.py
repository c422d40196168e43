"""Localized fixed strings and dates for en, zh-CN and zh-TW (Babel formats the dates)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache

from babel import Locale
from babel.dates import format_date, format_datetime

# Fixed template strings. Keys are stable; [strings.<lang>] in config.toml overrides any of them.
STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "view_in_browser": "View in browser",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_line": "You receive this email because you subscribed to {title}.",
        "paper": "Paper",
        "code": "Code",
        "authors": "Authors",
        "venue": "Venue",
        "year": "Year",
        "summary": "Summary",
        "archive": "Archive",
        "all_editions": "All editions",
        "in_this_edition": "In this edition",
        "items": "{count} items",
        "other": "Other",
        "previous": "Previous",
        "next": "Next",
        "subscribe_feed": "Subscribe via RSS",
        "published": "Published",
        "draft": "Draft",
        "open": "In progress",
        "tags": "Tags",
        "no_editions": "No editions yet.",
    },
    "zh-CN": {
        "view_in_browser": "在浏览器中查看",
        "unsubscribe": "退订",
        "unsubscribe_line": "你收到这封邮件，是因为你订阅了「{title}」。",
        "paper": "论文",
        "code": "代码",
        "authors": "作者",
        "venue": "发表刊物/会议",
        "year": "发表年份",
        "summary": "内容概要",
        "archive": "往期",
        "all_editions": "全部往期",
        "in_this_edition": "本期目录",
        "items": "{count} 篇",
        "other": "其他",
        "previous": "上一期",
        "next": "下一期",
        "subscribe_feed": "通过 RSS 订阅",
        "published": "发布于",
        "draft": "草稿",
        "open": "收集中",
        "tags": "标签",
        "no_editions": "还没有任何一期。",
    },
    "zh-TW": {
        "view_in_browser": "在瀏覽器中檢視",
        "unsubscribe": "取消訂閱",
        "unsubscribe_line": "你收到這封郵件，是因為你訂閱了「{title}」。",
        "paper": "論文",
        "code": "程式碼",
        "authors": "作者",
        "venue": "發表期刊/會議",
        "year": "發表年份",
        "summary": "內容摘要",
        "archive": "往期",
        "all_editions": "全部往期",
        "in_this_edition": "本期目錄",
        "items": "{count} 篇",
        "other": "其他",
        "previous": "上一期",
        "next": "下一期",
        "subscribe_feed": "透過 RSS 訂閱",
        "published": "發佈於",
        "draft": "草稿",
        "open": "收集中",
        "tags": "標籤",
        "no_editions": "還沒有任何一期。",
    },
}


def catalog_language(language: str) -> str:
    """The catalog to use for a BCP 47 tag: zh-Hant/zh-HK/zh-TW → zh-TW, other zh → zh-CN."""
    if language in STRINGS:
        return language
    loc = _locale(language)
    if loc.language == "zh":
        traditional = loc.script == "Hant" or loc.territory in ("TW", "HK", "MO")
        return "zh-TW" if traditional else "zh-CN"
    return loc.language if loc.language in STRINGS else "en"


@lru_cache(maxsize=16)
def _locale(language: str) -> Locale:
    return Locale.parse(language, sep="-")


class Translator:
    """Looks up a fixed string for one language, with config overrides and English fallback."""

    def __init__(self, language: str, overrides: Mapping[str, Mapping[str, str]] = {}) -> None:
        self.language = language
        self.catalog = catalog_language(language)
        self.locale = _locale(language)
        self.table = {
            **STRINGS["en"],
            **STRINGS.get(self.catalog, {}),
            **overrides.get(self.catalog, {}),
            **overrides.get(language, {}),
        }

    def __call__(self, key: str, **values: object) -> str:
        text = self.table.get(key, key)
        return text.format(**values) if values else text

    def date(self, value: date | datetime, fmt: str = "long") -> str:
        if isinstance(value, datetime):
            value = value.date()
        return str(format_date(value, format=fmt, locale=self.locale))

    def datetime(self, value: datetime, fmt: str = "medium") -> str:
        return str(format_datetime(value, format=fmt, tzinfo=value.tzinfo, locale=self.locale))
