"""Benchmarks and the synthetic org generator (see docs/performance.md)."""
