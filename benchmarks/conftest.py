"""Benchmarks (not in the default test run): python -m pytest benchmarks --benchmark-only -n 0"""

import pytest


def pytest_configure(config):
    # pyproject's addopts spread tests over workers; timings must come from one process,
    # and pytest-benchmark would otherwise skip every benchmark with only a warning.
    if config.getoption("dist", "no") != "no":
        raise pytest.UsageError("benchmarks time one process: add -n 0")
