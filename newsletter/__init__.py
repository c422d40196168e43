"""newsletter: publish a newsletter or digest from plain Markdown files."""

__version__ = "0.1.0"
