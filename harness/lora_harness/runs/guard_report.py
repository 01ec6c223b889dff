"""The guard's report: the run report's shape (JSON, HTML, JUnit) plus a `guard` section."""

from __future__ import annotations

import time

from lora_harness.reports import json_report
from lora_harness.runs import environment
from lora_harness.runs.run import now


def build(
    guarded, run_id: str, command: list[str], started_at: str, started: float, state: str
) -> dict:
    """`state`: running (the live report), stopped (a hard failure) or finished."""
    monitor, watch = guarded.monitor, guarded.watch
    results = [r.to_dict() for r in monitor.results.values()] if monitor else []
    model = {
        "spec": str(guarded.args.model),
        "kind": "local",
        "path": str(guarded.args.model),
        "model_type": guarded.source_config.get("model_type"),
        "num_hidden_layers": guarded.source_config.get("num_hidden_layers"),
        "hidden_size": guarded.source_config.get("hidden_size"),
        "has_weights": True,
    }
    lora = watch.lora.to_dict() if watch else {}
    return {
        "schema_version": json_report.SCHEMA_VERSION,
        "kind": "run",
        "run": {
            "id": run_id,
            "started_at": started_at,
            "finished_at": now(),
            "duration_s": round(time.perf_counter() - started, 3),
            "command": command,
            "suite": "guard",
            "checks_requested": list(dict.fromkeys(r["name"] for r in results)),
            "recipe": MLX_LM_PROVENANCE,
        },
        "environment": environment.collect(),
        "model": model,
        "lora": lora,
        "expectations": watch.model.expectations.to_dict()
        if watch and watch.model.expectations
        else None,
        "checks": results,
        "metrics": {"steps": list(guarded.steps), "summary": {}},
        "artifacts": {"adapter_path": str(guarded.args.adapter_path)},
        "summary": json_report.summarise(results),
        "guard": guard_section(guarded, state),
    }


# Every training step of a guarded run is mlx-lm's own code (the user's training); none is ours.
MLX_LM_PROVENANCE = {
    "name": "mlx_lm.lora",
    "user_steps": [
        "freeze",
        "convert",
        "unfreeze",
        "init_optimizer",
        "value_and_grad",
        "loss",
        "tokenize",
        "save",
    ],
    "fault_steps": [],
    "correct_steps": [],
}


def guard_section(guarded, state: str) -> dict:
    """The monitor's section (timeline, stop) with the run's own settings."""
    monitor = guarded.monitor
    section = {k: v for k, v in monitor.section().items() if k != "checks"} if monitor else {}
    return {
        "state": state,
        "trainer": "mlx_lm.tuner.trainer.train",
        "iters": guarded.args.iters,
        "save_every": guarded.args.save_every,
        "check_every": guarded.check_every,
        "iteration": 0,
        "timeline": [],
        **section,
    }
