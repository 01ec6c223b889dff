"""Compare two sets of parameter names and describe the difference briefly."""

from __future__ import annotations

from lora_harness.core.checking import Measurement
from lora_harness.core.words import plural

SHOWN = 5


def compare(observed: set[str], expected: set[str], allow_missing: bool = False) -> Measurement:
    """Measurement of names out of place: "56 names, 0 extra, 0 missing" reads on its own."""
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
    observed_text = f"{plural(len(observed), 'name')}, {len(extra)} extra, {len(missing)} missing"
    expected_text = f"{plural(len(expected), 'name')}, 0 extra, 0 missing"
    return Measurement(observed_text, expected_text, evidence)


def judge(measurement: Measurement, what: str, extra_means: str, missing_means: str):
    ev = measurement.evidence
    if ev["extra_count"] + ev["missing_count"] == 0:
        return "pass", f"{what}: {ev['observed_count']} names, exactly the trainable adapter leaves"
    parts = []
    if ev["extra_count"]:
        parts.append(f"{ev['extra_count']} {extra_means} (e.g. {ev['extra'][0]})")
    if ev["missing_count"]:
        parts.append(f"{ev['missing_count']} {missing_means} (e.g. {ev['missing'][0]})")
    return "fail", f"{what}: " + "; ".join(parts)
