"""Check -> Measurement -> CheckResult, and the registry of checks by name.

A check measures something on the run context and judges it against an expectation;
measuring and judging stay apart so thresholds can be set without touching the
measurement. Whatever happens inside a check becomes a result: an exception is an
`error` result, never a crashed suite.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

STATUSES = ("pass", "warn", "fail", "error", "skip")


class SkipCheck(Exception):
    """Raised inside `measure` when the check cannot apply to this run; the message says why."""


class PartFailed(Exception):
    """A part of the run a check needed (training, the LoRA model) failed before the check
    could measure: an `error` result whose message names that part and its own error, so
    the same cause reads the same in every check that needed it (never a check's finding)."""


@dataclass
class Measurement:
    observed: Any
    expected: Any = None
    evidence: dict = field(default_factory=dict)


@dataclass
class CheckResult:
    name: str
    status: str
    summary: str
    observed: Any = None
    expected: Any = None
    message: str = ""
    remedy: str = ""
    duration_s: float = 0.0
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class Check:
    """One health check. Subclasses set the class attributes and implement `measure`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    symptom: ClassVar[str]
    remedy: ClassVar[str]
    # Capabilities the run context must offer, e.g. "weights" (not a shape-only model).
    requires: ClassVar[tuple[str, ...]] = ()
    # Context properties to build before training starts (e.g. "init_generations").
    before_training: ClassVar[tuple[str, ...]] = ()
    # The faults (lora/faults.py names) this check fails on: the catalogue's one record of
    # what catches what. The self-test verifies it by running each fault (a declared catcher
    # that passes is a finding) and `lora-harness selftest --declared` draws it.
    catches: ClassVar[tuple[str, ...]] = ()
    # For a check no fault of the catalogue reaches (doctor files, guard and trainer probes):
    # "tests/test_x.py::test_name", the test that shows it failing. A check with neither
    # `catches` nor this cannot be shown to fail, and tests/test_catalogue.py reports it.
    shown_failing_in: ClassVar[str] = ""

    def measure(self, ctx) -> Measurement:
        raise NotImplementedError

    def judge(self, measurement: Measurement) -> tuple[str, str]:
        """Default judgement: observed must equal expected."""
        if measurement.observed == measurement.expected:
            return "pass", f"{measurement.observed} as expected"
        return "fail", f"observed {measurement.observed}, expected {measurement.expected}"

    def run(self, ctx) -> CheckResult:
        started = time.perf_counter()
        result = CheckResult(name=self.name, status="error", summary=self.summary)
        try:
            missing = [cap for cap in self.requires if not ctx.offers(cap)]
            if missing:
                raise SkipCheck(ctx.why_not(missing[0]))
            measurement = self.measure(ctx)
            result.observed = measurement.observed
            result.expected = measurement.expected
            result.evidence = measurement.evidence
            result.status, result.message = self.judge(measurement)
        except SkipCheck as skip:
            result.status, result.message = "skip", str(skip)
        except PartFailed as failed:
            result.message = str(failed)
            cause = failed.__cause__ or failed
            result.evidence = {
                "traceback": "".join(traceback.format_exception(cause, limit=8)),
            }
        except Exception as exc:  # a check that crashes is reported, not propagated
            result.message = f"{exc.__class__.__name__}: {exc}"
            result.evidence = {"traceback": traceback.format_exc(limit=8)}
        if result.status in ("fail", "warn", "error"):
            result.remedy = self.remedy
        result.duration_s = round(time.perf_counter() - started, 6)
        return result


REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    """Class decorator: make a check available by its name."""
    for attribute in ("name", "summary", "symptom", "remedy"):
        if not getattr(cls, attribute, None):
            raise TypeError(f"check {cls.__name__} must set {attribute}")
    REGISTRY[cls.name] = cls
    return cls


def logit_difference(observed, reference) -> tuple[float, float]:
    """(max |observed - reference|, that divided by max |reference|), in float32."""
    import mlx.core as mx

    observed, reference = observed.astype(mx.float32), reference.astype(mx.float32)
    difference = mx.max(mx.abs(observed - reference)).item()
    return difference, difference / max(mx.max(mx.abs(reference)).item(), 1e-12)
