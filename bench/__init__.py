"""Benchmarks for newsletter: run on demand with `python bench/run.py` (see README.md)."""
