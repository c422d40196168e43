"""Reliability and security suite."""
