"""Shared fixtures: a fixed clock and throwaway projects."""

from __future__ import annotations
