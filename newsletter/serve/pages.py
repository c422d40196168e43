"""The service's own pages and the confirmation email: Jinja2 (autoescaped), localized strings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from newsletter.config import Config
from newsletter.i18n import Translator

TEMPLATES = Path(__file__).resolve().parent / "templates"

# Our pages: nothing from elsewhere, no framing (clickjacking the unsubscribe button), forms
# only to ourselves, and no Referer, which would carry a token to wherever a link leads.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# Fixed strings of the service, keyed like i18n.STRINGS; [strings.<lang>] overrides any of them.
STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "subscribe_title": "Subscribe to {title}",
        "subscribe_intro": "Get every edition by email. We will send you a link to confirm "
        "your address; you can unsubscribe at any time.",
        "email_label": "Email address",
        "name_label": "Name (optional)",
        "subscribe_button": "Subscribe",
        "check_inbox_title": "Check your inbox",
        "check_inbox_text": "If {email} can be subscribed, a confirmation link is on its way. "
        "Open it within 7 days to finish subscribing.",
        "invalid_email": "This does not look like an email address: {error}",
        "form_expired_title": "Please try again",
        "form_expired_text": "The form expired or was sent from another site. Reload the "
        "subscribe page and send it again.",
        "rate_limited_title": "Too many requests",
        "rate_limited_text": "Please wait a while before trying again.",
        "confirmed_title": "You are subscribed",
        "confirmed_text": "Thank you for confirming: {email} will receive {title}.",
        "already_confirmed_text": "{email} is already subscribed to {title}.",
        "link_invalid_title": "This link does not work",
        "link_invalid_text": "The link is incomplete or was changed. Copy the whole link from "
        "the email, or subscribe again.",
        "link_expired_title": "This link has expired",
        "link_expired_text": "Subscribe again to get a new confirmation link.",
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop sending {title} to {email}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribed_title": "You are unsubscribed",
        "unsubscribed_text": "{email} will not receive {title} any more.",
        "resubscribe": "Changed your mind? Subscribe again",
        "read_archive": "Read the archive",
        "confirm_subject": "Confirm your subscription to {title}",
        "confirm_intro": "Someone, hopefully you, asked to subscribe {email} to {title}.",
        "confirm_action": "Confirm my subscription",
        "confirm_ignore": "If this was not you, ignore this email: nothing happens unless "
        "the link is opened. It works for 7 days.",
        "error_title": "Something went wrong",
        "error_text": "Please try again later.",
        "too_large_title": "Request too large",
        "not_found_title": "Page not found",
    },
    "zh-CN": {
        "subscribe_title": "订阅「{title}」",
        "subscribe_intro": "通过邮件接收每一期。我们会发送一封确认邮件，你可以随时退订。",
        "email_label": "电子邮件地址",
        "name_label": "称呼（可选）",
        "subscribe_button": "订阅",
        "check_inbox_title": "请查收邮件",
        "check_inbox_text": "如果 {email} 可以订阅，确认链接已经发出。"
        "请在 7 天内打开它以完成订阅。",
        "invalid_email": "这似乎不是一个有效的电子邮件地址：{error}",
        "form_expired_title": "请重试",
        "form_expired_text": "表单已过期，或来自其他网站。请重新打开订阅页面后再提交。",
        "rate_limited_title": "请求过于频繁",
        "rate_limited_text": "请稍后再试。",
        "confirmed_title": "订阅成功",
        "confirmed_text": "感谢确认：{email} 将会收到「{title}」。",
        "already_confirmed_text": "{email} 已经订阅了「{title}」。",
        "link_invalid_title": "链接无效",
        "link_invalid_text": "链接不完整或已被修改。请从邮件中复制完整链接，或重新订阅。",
        "link_expired_title": "链接已过期",
        "link_expired_text": "请重新订阅以获取新的确认链接。",
        "unsubscribe_title": "退订",
        "unsubscribe_question": "不再向 {email} 发送「{title}」？",
        "unsubscribe_button": "退订",
        "unsubscribed_title": "已退订",
        "unsubscribed_text": "{email} 将不会再收到「{title}」。",
        "resubscribe": "改变主意了？重新订阅",
        "read_archive": "阅读往期",
        "confirm_subject": "请确认订阅「{title}」",
        "confirm_intro": "有人（希望是你）请求将 {email} 订阅到「{title}」。",
        "confirm_action": "确认订阅",
        "confirm_ignore": "如果这不是你本人的操作，请忽略本邮件：不打开链接就不会订阅。"
        "链接 7 天内有效。",
        "error_title": "出错了",
        "error_text": "请稍后再试。",
        "too_large_title": "请求过大",
        "not_found_title": "页面不存在",
    },
    "zh-TW": {
        "subscribe_title": "訂閱「{title}」",
        "subscribe_intro": "透過電子郵件接收每一期。我們會寄出一封確認信，你可以隨時取消訂閱。",
        "email_label": "電子郵件地址",
        "name_label": "稱呼（選填）",
        "subscribe_button": "訂閱",
        "check_inbox_title": "請查收郵件",
        "check_inbox_text": "如果 {email} 可以訂閱，確認連結已經寄出。"
        "請在 7 天內開啟它以完成訂閱。",
        "invalid_email": "這似乎不是有效的電子郵件地址：{error}",
        "form_expired_title": "請重試",
        "form_expired_text": "表單已過期，或來自其他網站。請重新開啟訂閱頁面後再送出。",
        "rate_limited_title": "請求過於頻繁",
        "rate_limited_text": "請稍後再試。",
        "confirmed_title": "訂閱成功",
        "confirmed_text": "感謝確認：{email} 將會收到「{title}」。",
        "already_confirmed_text": "{email} 已經訂閱了「{title}」。",
        "link_invalid_title": "連結無效",
        "link_invalid_text": "連結不完整或已被修改。請從郵件中複製完整連結，或重新訂閱。",
        "link_expired_title": "連結已過期",
        "link_expired_text": "請重新訂閱以取得新的確認連結。",
        "unsubscribe_title": "取消訂閱",
        "unsubscribe_question": "不再寄送「{title}」給 {email}？",
        "unsubscribe_button": "取消訂閱",
        "unsubscribed_title": "已取消訂閱",
        "unsubscribed_text": "{email} 將不會再收到「{title}」。",
        "resubscribe": "改變主意了？重新訂閱",
        "read_archive": "閱讀往期",
        "confirm_subject": "請確認訂閱「{title}」",
        "confirm_intro": "有人（希望是你）要求將 {email} 訂閱「{title}」。",
        "confirm_action": "確認訂閱",
        "confirm_ignore": "如果這不是你本人的操作，請忽略這封郵件：不開啟連結就不會訂閱。"
        "連結 7 天內有效。",
        "error_title": "發生錯誤",
        "error_text": "請稍後再試。",
        "too_large_title": "請求過大",
        "not_found_title": "找不到頁面",
    },
}


def _autoescape(name: str | None) -> bool:
    # Everything is HTML-escaped except the plain-text part of the confirmation email.
    return not (name or "").endswith(".txt.j2")


class ServeTranslator(Translator):
    """The site's Translator plus the service's strings (config overrides still win)."""

    def __init__(self, language: str, overrides: Mapping[str, Mapping[str, str]] = {}) -> None:
        super().__init__(language, overrides)
        self.table = {**STRINGS["en"], **STRINGS.get(self.catalog, {}), **self.table}


class Pages:
    """Renders the service's templates for one configured newsletter."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.t = ServeTranslator(config.newsletter.language, config.strings)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(TEMPLATES)),
            autoescape=_autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            t=self.t,
            newsletter=config.newsletter,
            home=config.base_url,
            lang=config.newsletter.language,
        )

    def render_text(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    def page(
        self,
        template: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """A page of ours with the security headers; ``context`` is escaped by the template."""
        body = self.render_text(template, **context)
        return HTMLResponse(
            body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )

    def message(
        self,
        title: str,
        text: str,
        status: int = 200,
        *,
        link: str = "",
        link_text: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        """The one-paragraph page used for outcomes and errors."""
        return self.page(
            "message.html.j2",
            status,
            headers,
            title=title,
            text=text,
            link=link,
            link_text=link_text,
        )
