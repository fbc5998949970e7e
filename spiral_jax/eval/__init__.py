"""Evaluation: exact Kuhn exploitability, arenas against fixed opponents, reasoning benchmarks."""
