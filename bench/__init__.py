"""Benchmarks (scripts; a package so tests can import their harnesses)."""
