"""Benchmarks: each figure a ratio or distribution measured side by side in one run."""
