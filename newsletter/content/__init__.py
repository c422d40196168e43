"""Stage "load": issue files and edition notes → Issues and EditionNotes (sanitized HTML)."""

from newsletter.content.cache import IssueCache
from newsletter.content.create import create_issue
from newsletter.content.issues import load_issues, load_notes
from newsletter.content.markdown import render_markdown

__all__ = ["IssueCache", "create_issue", "load_issues", "load_notes", "render_markdown"]
