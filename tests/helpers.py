"""Importable helpers for tests that pass `module:callable` specs to the CLI."""


def constant_scorer(generations, references):
    return 0.5
