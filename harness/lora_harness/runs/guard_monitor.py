"""The guard's engine: run named checks against the training state of this moment.

A `Monitor` observes a run through a `Watch` (expectations, base fingerprints from the
start, the optimizer whose `update` records the gradient tree). At each moment (start,
every `check_every` steps, each checkpoint, the end) it fingerprints the model again and
runs the gate's own Check classes against a context of that moment. The first `fail`
raises `GuardStop` out of the training loop, so a long run stops where it broke. Every
result is kept with its iteration, and a live report is rewritten atomically.
"""

from __future__ import annotations

import time
from pathlib import Path

from lora_harness.core.checking import CheckResult
from lora_harness.runs import suites
from lora_harness.runs.training import TrainingOutcome

START = list(suites.STRUCTURE)
PERIODIC = [
    "frozen_base_unchanged",
    "gradient_tree_matches_trainable",
    "optimizer_state_matches_trainable",
    "training_values_finite",
    "lr_schedule_applied",
]
CHECKPOINT = PERIODIC + ["checkpoint_file_exact", "generation_probe"]
END = PERIODIC + ["adapters_changed", "loss_finite_and_decreasing"]
RANK = {"fail": 4, "error": 3, "warn": 2, "pass": 1, "skip": 0}


class GuardStop(Exception):
    """A hard failure: the run stops here; the report names the check, iteration and remedy."""

    def __init__(self, result: CheckResult, iteration: int, phase: str):
        super().__init__(
            f"{result.name} failed at iteration {iteration} ({phase}): {result.message} "
            f"-> {result.remedy}"
        )
        self.result, self.iteration, self.phase = result, iteration, phase


class Moment:
    """The run context of one moment: the watch's parts with this moment's training state."""

    def __init__(self, monitor: Monitor, outcome: TrainingOutcome, iteration: int, **extra):
        watch = monitor.watch
        self.model, self.recipe, self.lora = watch.model, watch.recipe, watch.lora
        self.training, self.iteration, self.monitor = outcome, iteration, monitor
        self.tokenizer = monitor.tokenizer
        self.batch = monitor.last_batch
        self.__dict__.update(monitor.context)  # probes the front end offers (accumulation, ...)
        self.__dict__.update(extra)

    def offers(self, capability: str) -> bool:
        if capability == "generation":
            return self.monitor.has_text
        return capability == "weights"

    def why_not(self, capability: str) -> str:
        if capability == "generation":
            return "no tokenizer with learned text: the generation probe says nothing here"
        return f"the guard observes a training run; {capability} checks need lora-harness run"


class Monitor:
    def __init__(
        self,
        watch,
        check_every: int = 100,
        live: Path | None = None,
        tokenizer=None,
        has_text: bool = False,
        stop: bool = True,
        extra: dict | None = None,
        on_report=None,
        context: dict | None = None,
    ):
        self.watch, self.check_every, self.live = watch, max(1, int(check_every)), live
        self.tokenizer, self.has_text, self.stop = (
            tokenizer,
            has_text and tokenizer is not None,
            stop,
        )
        self.extra = dict(extra or {})  # additional checks per phase: {"periodic": [...]}
        self.timeline: list[dict] = []  # one row per check and moment
        self.results: dict[str, CheckResult] = {}  # the worst (then latest) per check
        self.last_batch = None
        self.stopped: GuardStop | None = None
        self.checks_seconds = 0.0
        self.iteration = 0
        self.context = dict(context or {})
        self.on_report = on_report  # a front end's live-report writer, called after each moment

    # -- moments ---------------------------------------------------------------------
    def start(self) -> None:
        self._run(START + self.extra.get("start", []), 0, "start")

    def step(self, iteration: int, batch=None) -> None:
        """Called after step `iteration` completed; checks when the interval is reached."""
        self.iteration = iteration
        if batch is not None:
            self.last_batch = batch
        if iteration % self.check_every == 0:
            self._run(PERIODIC + self.extra.get("periodic", []), iteration, "periodic")

    def checkpoint(self, iteration: int, path: Path, saved: dict) -> None:
        """A checkpoint file at `path` was written from the adapters whose digests are `saved`."""
        names = CHECKPOINT + self.extra.get("checkpoint", [])
        self._run(names, iteration, "checkpoint", checkpoint=(Path(path), saved))

    def end(self, iteration: int, adapter_file: Path | None = None, saved: dict | None = None):
        names = END + self.extra.get("end", [])
        extra = {"checkpoint": (Path(adapter_file), saved)} if adapter_file else {}
        if adapter_file:
            names = names + ["checkpoint_file_exact"]
        self._run(names, iteration, "end", **extra)

    # -- running ---------------------------------------------------------------------
    def outcome(self) -> TrainingOutcome:
        return self.watch.snapshot()

    def _run(self, names: list[str], iteration: int, phase: str, **extra) -> None:
        started = time.perf_counter()
        registry = suites.all_checks()
        moment = Moment(self, self.outcome(), iteration, **extra)
        failed = None
        for name in dict.fromkeys(names):
            reason = self.watch._not_seen(name) if phase != "start" else None
            if reason:
                result = CheckResult(name, "skip", registry[name].summary, message=reason)
            else:
                result = registry[name]().run(moment)
            self._keep(result, iteration, phase)
            if result.status == "fail" and failed is None:
                failed = result
        self.checks_seconds += time.perf_counter() - started
        if failed is not None and self.stop:
            self.stopped = GuardStop(failed, iteration, phase)
        self.write_live()
        if self.stopped is not None:
            raise self.stopped

    def _keep(self, result: CheckResult, iteration: int, phase: str) -> None:
        row = {
            "iteration": iteration,
            "phase": phase,
            "check": result.name,
            "status": result.status,
        }
        if result.status in ("fail", "error", "warn"):
            row["message"] = result.message
        self.timeline.append(row)
        result.evidence = {**result.evidence, "iteration": iteration, "phase": phase}
        previous = self.results.get(result.name)
        if previous is None or RANK[result.status] >= RANK[previous.status]:
            if result.status in ("fail", "error", "warn"):
                result.message = f"at iteration {iteration} ({phase}): {result.message}"
            self.results[result.name] = result
        checked = [r["iteration"] for r in self.timeline if r["check"] == result.name]
        self.results[result.name].evidence["checked_at_iterations"] = checked

    def section(self) -> dict:
        """Every mid-run result (the worst per check) and the timeline, for a report."""
        section = {
            "iteration": self.iteration,
            "check_every": self.check_every,
            "checks_s": round(self.checks_seconds, 4),
            "checks": [r.to_dict() for r in self.results.values()],
            "timeline": list(self.timeline),
        }
        if self.stopped is not None:
            stop = self.stopped
            section["stopped"] = {
                "check": stop.result.name,
                "iteration": stop.iteration,
                "phase": stop.phase,
                "message": stop.result.message,
                "remedy": stop.result.remedy,
            }
        return section

    def write_live(self) -> None:
        if self.on_report is not None:
            self.on_report()
