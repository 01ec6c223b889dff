"""Self-test: run the clean recipe and every known fault, and show which checks catch what.

A fault is *caught* when at least one of its expected checks fails. A fault whose run
passes every check and ends with parameters bit-identical to the clean run has *no
observable effect* on this MLX version (e.g. skipping `optimizer.init`, since MLX creates
optimizer state lazily): it is reported as such with that evidence, never counted as
caught. Anything else that passes is an *escape*.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lora_harness.lora.faults import FAULTS, Fault, on_recipe
from lora_harness.models.sources import ModelSource
from lora_harness.runs import suites
from lora_harness.runs.context import RunContext
from lora_harness.runs.run import Settings


def _run(source: ModelSource, settings: Settings, fault: Fault | None) -> tuple[RunContext, list]:
    lora = dataclasses.replace(settings.lora, **(fault.lora_overrides if fault else {}))
    ctx = RunContext(
        source,
        lora,
        pins=settings.pins,
        recipe=on_recipe(fault, settings.recipe) if fault else settings.recipe,
        data_dir=settings.data_dir,
        generation_settings=settings.generation,
    )
    return ctx, suites.run_checks(ctx, suites.GATE)


def _final_parameters(ctx: RunContext) -> dict:
    """Fingerprints after training (adapters and base), or {} when training never ran."""
    if not ctx.trained:
        return {}
    return {**ctx.training.adapter_after, **ctx.training.base_after}


def judge_fault(fault: Fault, results: list, fault_params: dict, clean_params: dict) -> dict:
    failed = [r.name for r in results if r.status in ("fail", "error")]
    caught_by = [name for name in failed if name in fault.expected_checks]
    identical = bool(fault_params) and fault_params == clean_params
    no_effect = not failed and identical
    if caught_by:
        evidence = {"failed": failed}
    elif no_effect:
        evidence = {"parameters_identical_to_clean_run": len(fault_params)}
    else:
        evidence = {"failed": failed, "parameters_identical_to_clean_run": identical}
    return {
        "name": fault.name,
        "description": fault.description,
        "expected_checks": list(fault.expected_checks),
        "caught_by": caught_by,
        "also_failed": [n for n in failed if n not in caught_by],
        "caught": bool(caught_by),
        "no_effect": no_effect,
        "evidence": evidence,
        "statuses": {r.name: r.status for r in results},
    }


def run_selftest(
    source: ModelSource,
    settings: Settings,
    fault_names: list[str],
    on_fault: Callable[[dict], None] | None = None,
) -> dict:
    """The `selftest` report section: the clean run's results and one entry per fault."""
    clean_ctx, clean_results = _run(source, settings, None)
    clean_params = _final_parameters(clean_ctx)
    entries = []
    for name in fault_names:
        fault = FAULTS[name]
        ctx, results = _run(source, settings, fault)
        entries.append(judge_fault(fault, results, _final_parameters(ctx), clean_params))
        if on_fault:
            on_fault(entries[-1])
    return {
        "clean": [r.to_dict() for r in clean_results],
        "faults": entries,
        "checks": list(suites.GATE),
        "summary": summarise(clean_results, entries),
    }


def summarise(clean_results: list, entries: list[dict]) -> dict:
    clean_bad = [r.name for r in clean_results if r.status not in ("pass", "skip")]
    escaped = [e["name"] for e in entries if not e["caught"] and not e["no_effect"]]
    return {
        "faults": len(entries),
        "caught": sum(e["caught"] for e in entries),
        "no_effect": [e["name"] for e in entries if e["no_effect"]],
        "escaped": escaped,
        "clean_not_passing": clean_bad,
        "verdict": "fail" if escaped or clean_bad else "pass",
    }


def markdown_matrix(section: dict) -> str:
    """The fault x check matrix as a Markdown table (x = failed, . = passed, - = skipped)."""
    checks = section["checks"]
    marks = {"fail": "x", "error": "E", "warn": "w", "pass": ".", "skip": "-"}
    header = "| fault | caught | " + " | ".join(f"`{c}`" for c in checks) + " |"
    rule = "|---|---|" + "---|" * len(checks)
    rows = [header, rule]
    for entry in section["faults"]:
        verdict = "yes" if entry["caught"] else "no effect" if entry["no_effect"] else "**ESCAPED**"
        cells = [marks[entry["statuses"][c]] for c in checks]
        rows.append(f"| `{entry['name']}` | {verdict} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
