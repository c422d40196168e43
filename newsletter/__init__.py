"""newsletter: publish a newsletter or digest from plain Markdown files.

The curated public API. Names are imported on first use (PEP 562), so `import newsletter` and
`newsletter --help` stay instant; type checkers see the real imports below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name → the module that defines it
_EXPORTS = {
    "BuildReport": "newsletter.pipeline",
    "Config": "newsletter.config",
    "ConfigError": "newsletter.errors",
    "ContentError": "newsletter.errors",
    "DeliveryStatus": "newsletter.models",
    "Edition": "newsletter.models",
    "Issue": "newsletter.models",
    "MemorySender": "newsletter.senders.memory",
    "NewsletterError": "newsletter.errors",
    "Outcome": "newsletter.senders.base",
    "OutboxSender": "newsletter.senders.outbox",
    "PermanentSendError": "newsletter.errors",
    "Problem": "newsletter.errors",
    "PublishError": "newsletter.errors",
    "RenderedEdition": "newsletter.models",
    "Result": "newsletter.senders.base",
    "ScheduleError": "newsletter.errors",
    "SendError": "newsletter.errors",
    "Sender": "newsletter.senders.base",
    "StateError": "newsletter.errors",
    "Subscriber": "newsletter.models",
    "SubscriberStatus": "newsletter.models",
    "TemplateError": "newsletter.errors",
    "TransientSendError": "newsletter.errors",
    "build": "newsletter.pipeline",
    "create_sender": "newsletter.senders",
    "load_and_group": "newsletter.pipeline",
    "load_config": "newsletter.config",
    "render_edition": "newsletter.pipeline",
}

__all__ = [
    "BuildReport",
    "Config",
    "ConfigError",
    "ContentError",
    "DeliveryStatus",
    "Edition",
    "Issue",
    "MemorySender",
    "NewsletterError",
    "OutboxSender",
    "Outcome",
    "PermanentSendError",
    "Problem",
    "PublishError",
    "RenderedEdition",
    "Result",
    "ScheduleError",
    "SendError",
    "Sender",
    "StateError",
    "Subscriber",
    "SubscriberStatus",
    "TemplateError",
    "TransientSendError",
    "__version__",
    "build",
    "create_sender",
    "load_and_group",
    "load_config",
    "render_edition",
]

if TYPE_CHECKING:
    from newsletter.config import Config, load_config
    from newsletter.errors import (
        ConfigError,
        ContentError,
        NewsletterError,
        PermanentSendError,
        Problem,
        PublishError,
        ScheduleError,
        SendError,
        StateError,
        TemplateError,
        TransientSendError,
    )
    from newsletter.models import (
        DeliveryStatus,
        Edition,
        Issue,
        RenderedEdition,
        Subscriber,
        SubscriberStatus,
    )
    from newsletter.pipeline import BuildReport, build, load_and_group, render_edition
    from newsletter.senders import create_sender
    from newsletter.senders.base import Outcome, Result, Sender
    from newsletter.senders.memory import MemorySender
    from newsletter.senders.outbox import OutboxSender


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'newsletter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
