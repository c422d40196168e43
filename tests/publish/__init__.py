"""Tests for the publish stage: archive pages, feeds, the atomic writer."""
