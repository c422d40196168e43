"""The one exception tree: user mistakes carry a location and a hint; everything else is a bug.

NewsletterError            message + hint, exit code 1
├── ConfigError            all problems at once, each naming the key
├── ContentError           path + line (front matter, Markdown, duplicates)
├── TemplateError          template name + line (Jinja2 or MJML)
├── PublishError           writing public/, running the publish command
├── StateError             the state database (locked, read-only, migrations)
├── SendError
│   ├── TransientSendError retry later (4xx SMTP, 429/5xx HTTP, timeouts)
│   └── PermanentSendError never retry (5xx SMTP, 4xx HTTP, bad credentials)
└── ScheduleError
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One located problem: rendered as ``path:line: message``."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}" if where else self.message


class NewsletterError(Exception):
    """A user-facing error: printed without a traceback, exit code 1."""

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        problems: Iterable[Problem] = (),
    ) -> None:
        self.message = message
        self.hint = hint
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def lines(self) -> list[str]:
        """Every line the CLI prints for this error, problems first, hint last."""
        out = [str(p) for p in self.problems] or [self.message]
        if self.problems and self.message and len(self.problems) > 1:
            out.append(self.message)
        if self.hint:
            out.append(f"hint: {self.hint}")
        return out


class ConfigError(NewsletterError):
    """config.toml (or an environment override) is invalid."""


class ContentError(NewsletterError):
    """An issue file or edition note is invalid."""


class TemplateError(NewsletterError):
    """A Jinja2 template or the MJML it produced is invalid."""


class PublishError(NewsletterError):
    """Writing the site or running the publish command failed."""


class StateError(NewsletterError):
    """The state database cannot be used (locked, read-only, too new)."""


class SendError(NewsletterError):
    """Delivering a message failed."""


class TransientSendError(SendError):
    """A failure worth retrying later."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """A failure that retrying cannot fix."""


class ScheduleError(NewsletterError):
    """The scheduler cannot run (lease held elsewhere, bad cron expression)."""


def located(
    problems: list[Problem],
    what: str,
    cls: type[NewsletterError] = ContentError,
    hint: str | None = None,
) -> NewsletterError:
    """Build one error carrying every problem found, so the user fixes them in one pass."""
    ordered = sorted(problems, key=lambda p: (p.path, p.line or 0, p.message))
    message = str(ordered[0]) if len(ordered) == 1 else f"{len(ordered)} problems in {what}"
    return cls(message, hint=hint, problems=ordered)
