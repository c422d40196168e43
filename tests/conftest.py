"""Shared fixtures: a fixed clock, throwaway projects, and the SMTP server plugin."""

from __future__ import annotations

pytest_plugins = ["tests.smtpd_fixture"]
