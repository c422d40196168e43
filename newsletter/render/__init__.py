"""Stage "render": Jinja2 templates → MJML → email HTML (mrml), plain text, archive pages."""

from newsletter.render.edition import Renderer

__all__ = ["Renderer"]
