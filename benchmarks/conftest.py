"""Benchmarks (not in the default test run): python -m pytest benchmarks --benchmark-only"""
