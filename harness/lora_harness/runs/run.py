"""One harness run, independent of the front end: settings in, report document out.

The CLI and the pytest plugin are thin adapters over `prepare` and `execute`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.files import copy_tree_atomic, write_atomic
from lora_harness.lora import expectations
from lora_harness.lora.adapters import fuse_with_mlx_lm
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.lora.recipe import CORRECT, Recipe
from lora_harness.models.sources import ModelSource
from lora_harness.reports import json_report
from lora_harness.runs import environment, suites, validate
from lora_harness.runs.context import RunContext
from lora_harness.runs.distributed import DEFAULT_DISTRIBUTED_TIMEOUT_S
from lora_harness.runs.given import Given, given
from lora_harness.text.generation import GenerationSettings


@dataclass
class Settings:
    model: str | None
    lora: LoRAConfig
    pins: dict
    suite: str | None
    check_names: list[str]
    data_dir: str | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    recipe: Recipe = CORRECT
    trainer: str = "sft"
    distributed: bool = False
    distributed_timeout: float = DEFAULT_DISTRIBUTED_TIMEOUT_S
    command: list[str] = field(default_factory=lambda: list(sys.argv))


def settings_from(values, spell=validate.cli_flag) -> Settings:
    """Validate the options given (a Given; a namespace or a mapping of option dests is made
    one) into Settings; raises InputError on bad input.

    `spell` names an option as the front end spells it (--rank, --lora-rank).
    """
    options = given(values)
    validate.check_options(options.values(), spell)
    validate.check_run(options, spell)
    lora, recipe = _lora_and_recipe(options, spell)
    suite = _suite(options)
    return Settings(
        model=options.model,
        lora=lora,
        pins=expectations.parse_pins(options.expect or []),
        suite=suite,
        check_names=suites.select(suite, options.check),
        trainer=options.trainer or "sft",
        distributed=bool(options.distributed),
        recipe=recipe,
        distributed_timeout=options.distributed_timeout or DEFAULT_DISTRIBUTED_TIMEOUT_S,
        data_dir=options.data,
        generation=options.generation_settings(),
    )


def recipe_for(options) -> Recipe:
    """The user's --recipe (or the correct one), fused as --fuse-dequantize says."""
    options, recipe = given(options), CORRECT
    if options.recipe:
        from lora_harness.lora import user_recipe

        recipe = user_recipe.load(options.recipe, options.trainer or "sft")
    if options.fuse_dequantize:
        fuse = functools.partial(fuse_with_mlx_lm, dequantize=True)
        recipe = dataclasses.replace(
            recipe,
            name=f"{recipe.name}+fuse-dequantize",
            fuse=fuse,
            user_steps=tuple(s for s in recipe.user_steps if s != "fuse"),
        )
    return recipe


def _lora_and_recipe(options: Given, spell) -> tuple[LoRAConfig, Recipe]:
    """The LoRA settings and the recipe, with --inject-fault applied on top."""
    lora, recipe = options.lora_config(spell), recipe_for(options)
    if not options.inject_fault:
        return lora, recipe
    from lora_harness.lora.faults import ALL_FAULTS

    if options.inject_fault not in ALL_FAULTS:
        raise InputError(
            f"{spell('inject_fault')} {options.inject_fault}: unknown; "
            "see lora-harness selftest --list"
        )
    return ALL_FAULTS[options.inject_fault].applied_to(lora, recipe)


def _suite(options: Given) -> str | None:
    if options.suite is None and options.trainer == "dpo" and not options.check:
        return "dpo"
    if options.suite is None and options.distributed and not options.check:
        return "distributed"
    return options.suite


def prepare(settings: Settings, step_callbacks=()) -> RunContext:
    """Resolve the model and derive expectations now, so bad input fails before any check runs."""
    ctx = RunContext.from_settings(settings, step_callbacks)
    if ctx.group is not None and ctx.group.size() < 2:
        # One rank cannot be out of sync with itself: the distributed checks would pass vacuously.
        raise InputError(
            "--distributed found a single rank; start every rank with MLX's launcher, e.g. "
            "mlx.launch -n 2 --backend ring lora-harness run --distributed "
            "(or lora-harness remote run --distributed --hosts FLEET.toml)"
        )
    ctx.model.expectations  # noqa: B018  (raises InputError for keys matching nothing, etc.)
    if ctx.source.has_weights:
        ctx.model.probe_batch  # noqa: B018  (raises InputError for unusable data)
        gen = ctx.generation
        gen.prompts, gen.references, gen.scorer  # noqa: B018  (bad paths fail now)
        if settings.trainer == "dpo":
            from lora_harness.lora.dpo import encode_pairs

            encode_pairs(ctx.model.dpo_rows, ctx.model.tokenizer)
        gen.saved_baseline()
    return ctx


def execute(settings: Settings, ctx: RunContext, on_result=None) -> dict:
    """Run the selected checks and return the report document."""
    started, tic = now(), time.perf_counter()
    results = [r.to_dict() for r in suites.run_checks(ctx, settings.check_names, on_result)]
    steps = ctx.training.metrics if ctx.trained else []
    report = report_header(settings, ctx.source, run_id=new_run_id(), started_at=started)
    report["run"]["duration_s"] = round(time.perf_counter() - tic, 3)
    report["run"]["training_s"] = ctx.training_seconds  # apart from the checks' durations
    report["expectations"] = ctx.model.expectations.to_dict()
    report["checks"] = results
    report["metrics"] = {"steps": steps, "summary": json_report.metrics_summary(steps)}
    report["generation"] = ctx.generation.section()
    if ctx.group is not None and ctx.trained:
        report["distributed"] = distributed_section(ctx.training.ranks)
    report["summary"] = json_report.summarise(results)
    return report


def distributed_section(ranks) -> dict:
    return {
        "size": ranks.size,
        "ranks": [
            {
                "rank": r,
                "trainable_arrays": ranks.trainable_arrays[r],
                "base_changed": ranks.base_changed[r],
                "adapter_digest": _short_digest(ranks.adapter_digests[r]),
            }
            for r in range(ranks.size)
        ],
        "distance_to_single": ranks.distance_to_single,
    }


def _short_digest(values: list[int]) -> str:
    """A rank's LoRA fingerprint as 16 hex digits: equal on every rank of an in-sync run."""
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


def report_header(
    settings: Settings,
    source: ModelSource,
    run_id: str,
    kind: str = "run",
    started_at: str | None = None,
) -> dict:
    """The parts of a report every kind of run shares; the caller fills in the results."""
    suite = settings.suite or ("gate" if settings.check_names == suites.GATE else None)
    return {
        "schema_version": json_report.SCHEMA_VERSION,
        "kind": kind,
        "run": {
            "id": run_id,
            "started_at": started_at or now(),
            "finished_at": now(),
            "duration_s": 0.0,
            "command": settings.command,
            "suite": suite,
            "checks_requested": settings.check_names,
            "recipe": settings.recipe.provenance(),
        },
        "environment": environment.collect(),
        "model": source.describe(),
        "lora": settings.lora.to_dict(),
        "expectations": None,
        "checks": [],
        "metrics": {"steps": [], "summary": {}},
        "artifacts": {},
        "summary": json_report.summarise([]),
    }


def save_baseline(report: dict, path: Path) -> str:
    """Store the run's measured voice score under its baseline key; returns the key."""
    from lora_harness.core.errors import InputError
    from lora_harness.runs import baselines

    section = report.get("generation")
    if not section:
        raise InputError(
            "--save-baseline needs a run that generates: use the gate suite on a model with weights"
        )
    verdict = report["summary"]["verdict"]
    if verdict != "pass":
        failed = [c["name"] for c in report["checks"] if c["status"] in ("fail", "error")]
        raise InputError(
            f"--save-baseline: not saved, the run's verdict is {verdict} "
            f"({', '.join(failed[:3])}); a baseline must come from a passing run"
        )
    entry = {
        "voice_score": section["trained_voice_score"],
        "voice_score_spread": section.get("trained_voice_spread", 0.0),
        "metrics": report["metrics"]["summary"],
        "run_id": report["run"]["id"],
        "saved_at": report["run"]["finished_at"],
    }
    baselines.save(path, section["baseline_key"], entry)
    return section["baseline_key"]


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_run_folder(
    report: dict, ctx: RunContext, out_dir: Path, write_report: bool = True
) -> Path:
    """Save the adapter (when trained) and the report under OUT/<run-id>/; returns report path.

    With write_report=False only the adapter is saved: the caller writes report.json last.
    """
    from lora_harness.lora.adapters import save_adapter

    folder = Path(out_dir) / report["run"]["id"]
    if ctx.adapter.written:  # already written once for the adapter checks
        adapter = copy_tree_atomic(ctx.adapter.folder, folder / "adapters")
        report["artifacts"]["adapter_path"] = str(adapter)
    elif ctx.trained:
        adapter = save_adapter(ctx.model.lora_model, ctx.lora, folder / "adapters")
        report["artifacts"]["adapter_path"] = str(adapter)
    if not write_report:
        return folder / "report.json"
    return write_atomic(folder / "report.json", json_report.dumps(report))
