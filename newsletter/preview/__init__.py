"""The local preview server: every edition rendered by the pipeline, served with live reload.

``newsletter.preview.command.serve_preview`` runs it; ``newsletter.preview.app.create_app``
builds the Starlette app (for tests and embedding). Nothing here imports Starlette, so the
CLI can say which extra to install when it is missing.
"""
