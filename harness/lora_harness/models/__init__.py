"""Where models come from: the built-in fixture (and its dtype/quantised variants), shape-only and local/hub models."""
