"""`newsletter serve`: the subscription service (Starlette), imported lazily by the CLI.

Modules: ``app`` (factory and routes), ``forms`` (subscribe, confirm, unsubscribe pages),
``subscription`` (the decisions, no HTTP), ``security`` (CSRF, limits, client IP),
``static`` (public/), ``pages`` (templates and strings), ``webhooks`` (one module per provider).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from newsletter.serve.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Starlette is an optional dependency ([serve] extra): import it only when asked for.
    if name == "create_app":
        from newsletter.serve.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
