"""Compare two sets of parameter names and describe the difference briefly."""

from __future__ import annotations

from lora_harness.core.checking import Measurement

SHOWN = 5


def compare(observed: set[str], expected: set[str], allow_missing: bool = False) -> Measurement:
    """Measurement whose `observed` is the number of names out of place (0 is healthy)."""
    extra = sorted(observed - expected)
    missing = [] if allow_missing else sorted(expected - observed)
    evidence = {
        "extra": extra[:SHOWN],
        "extra_count": len(extra),
        "missing": missing[:SHOWN],
        "missing_count": len(missing),
        "observed_count": len(observed),
        "expected_count": len(expected),
    }
    return Measurement(len(extra) + len(missing), 0, evidence)


def judge(measurement: Measurement, what: str, extra_means: str, missing_means: str):
    ev = measurement.evidence
    if measurement.observed == 0:
        return "pass", f"{what}: {ev['observed_count']} names, exactly the trainable adapter leaves"
    parts = []
    if ev["extra_count"]:
        parts.append(f"{ev['extra_count']} {extra_means} (e.g. {ev['extra'][0]})")
    if ev["missing_count"]:
        parts.append(f"{ev['missing_count']} {missing_means} (e.g. {ev['missing'][0]})")
    return "fail", f"{what}: " + "; ".join(parts)
