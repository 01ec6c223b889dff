"""Importable test helpers: plain functions and constants (fixtures live in tests/conftest.py)."""
