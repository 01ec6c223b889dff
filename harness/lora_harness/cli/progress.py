"""What a person sees while a run works: a bar over training steps and a line per check."""

from __future__ import annotations

import sys

from lora_harness.core.terminal import printable

SYMBOLS = {"pass": "PASS", "warn": "WARN", "fail": "FAIL", "error": "ERROR", "skip": "skip"}


class Progress:
    """Writes to `stream` (stderr by default so `--json -` keeps stdout clean)."""

    def __init__(self, total_steps: int, stream=None, enabled: bool = True, lines_every: int = 0):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total_steps = total_steps
        # Off a terminal the bar is hidden; long work still says how far it got every N steps.
        self.lines_every = lines_every
        self._bar = None

    def on_step(self, metrics: dict) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total_steps,
                desc="training",
                unit="step",
                file=self.stream,
                leave=False,
                disable=None,  # a bar only on a terminal; logs get the per-check lines
            )
        self._bar.set_postfix(loss=f"{metrics['loss']:.4f}")
        self._bar.update(1)
        step = metrics["iteration"]
        if (
            self._bar.disable
            and self.lines_every
            and (step % self.lines_every == 0 or step == self.total_steps)
        ):
            self.note(f"  step {step}/{self.total_steps}  loss {metrics['loss']:.4f}")
        if metrics["iteration"] >= self.total_steps:
            self._bar.close()

    def on_result(self, result) -> None:
        if not self.enabled:
            return
        if self._bar is not None and not self._bar.disable:
            self._bar.close()
        # A message may quote generated text or a path: no raw control character reaches the tty.
        line = f"  {SYMBOLS[result.status]:<5} {result.name:<36} {printable(result.message)}"
        self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(printable(text) + "\n")
            self.stream.flush()


def summary_line(summary: dict) -> str:
    counts = ", ".join(
        f"{summary[s]} {s}" for s in ("pass", "warn", "fail", "error", "skip") if summary[s]
    )
    return f"verdict: {summary['verdict'].upper()} ({counts})"


def recipe_line(provenance: dict) -> str | None:
    """Whose code each step runs, for a run that is not the correct recipe's alone."""
    if not provenance["user_steps"] and not provenance["fault_steps"]:
        return None
    parts = [f"recipe {provenance['name']}:"]
    if provenance["user_steps"]:
        parts.append(f"your steps: {', '.join(provenance['user_steps'])};")
    if provenance["fault_steps"]:
        parts.append(f"fault's steps: {', '.join(provenance['fault_steps'])};")
    filled = ", ".join(provenance["correct_steps"]) or "none"
    parts.append(f"filled from the correct recipe: {filled}")
    return " ".join(parts)
