"""Self-test: run the clean recipe and every known fault, and show which checks catch what.

Which check catches which fault is declared once, by the checks (`Check.catches`); the
self-test never trusts it: it runs every fault and reports each declared catcher that
passed on a fault with an effect (`declared_not_failed`, summary `unkept_declarations`),
which fails its verdict. A fault is *caught* when at least one declared catcher fails;
failures of undeclared checks are listed (`also_failed`). A fault whose run
passes every check, keeps the base bit-identical to the clean run's and ends with adapters
as close to the clean run's as a second clean run is (within the spread of two clean runs,
numerics.allowed_difference) has *no observable effect* on this MLX version and backend
(e.g. skipping `optimizer.init`, since MLX creates optimizer state lazily): it is
reported as such with that evidence, never counted as caught. Anything else that passes
is an *escape*. Bit-identity is not asked of the adapters: GPU reductions do not promise it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from lora_harness.core import numerics
from lora_harness.lora.adapters import adapter_weights
from lora_harness.lora.faults import FAULTS, Fault
from lora_harness.models.sources import ModelSource
from lora_harness.reports import json_report
from lora_harness.runs import suites
from lora_harness.runs.context import RunContext
from lora_harness.runs.run import Settings, new_run_id, now, report_header


def _run(source: ModelSource, settings: Settings, fault: Fault | None) -> tuple[RunContext, list]:
    lora, recipe = configured(settings, fault)
    ctx = RunContext(
        source,
        lora,
        pins=settings.pins,
        recipe=recipe,
        data_dir=settings.data_dir,
        generation_settings=settings.generation,
    )
    return ctx, suites.run_checks(ctx, suites.GATE)


def configured(settings: Settings, fault: Fault | None):
    """(lora, recipe) of one self-test run: the settings' own, or with `fault` applied."""
    if fault is None:
        return settings.lora, settings.recipe
    return fault.applied_to(settings.lora, settings.recipe)


@dataclass
class FinalState:
    """What training left: base fingerprints (frozen, so bit-exact anywhere) and the adapters."""

    base: dict
    adapters: dict


def final_state(ctx: RunContext) -> FinalState | None:
    """The state after training, or None when training never ran."""
    if not ctx.trained:
        return None
    return FinalState(ctx.training.base_after, adapter_weights(ctx.model.lora_model))


@dataclass
class CleanSpread:
    """Two clean runs: how far apart equal recipes end on this backend, and what is allowed."""

    state: FinalState | None
    spread: float
    allowed: float

    @classmethod
    def measure(cls, first: FinalState | None, second: FinalState | None) -> CleanSpread:
        if first is None or second is None:
            return cls(first, math.nan, math.nan)
        spread = numerics.tree_distance(second.adapters, first.adapters)
        precision = numerics.precision_of_arrays(first.adapters.values())
        floor = spread if math.isfinite(spread) else 0.0
        return cls(first, spread, numerics.allowed_difference(precision, floor))


def judge_fault(fault: Fault, results: list, state: FinalState | None, clean: CleanSpread) -> dict:
    failed = [r.name for r in results if r.status == "fail"]
    # A check that raised judged nothing: a crash is never a catch (data_without_terminator
    # once raised KeyError on chat rows and every check "caught" it).
    errored = [r.name for r in results if r.status == "error"]
    declared = suites.catchers(fault.name, [r.name for r in results])
    caught_by = [name for name in failed if name in declared]
    effect = _effect(state, clean)
    no_effect = not failed and not errored and effect["within_clean_spread"]
    evidence = (
        {"failed": failed} if caught_by else effect if no_effect else {"failed": failed, **effect}
    )
    if errored:
        evidence["errored"] = errored
    return {
        "name": fault.name,
        "description": fault.description,
        "expected_checks": declared,
        "caught_by": caught_by,
        "also_failed": [n for n in failed if n not in caught_by],
        "errored": errored,
        # A declaration the run did not keep: the check says it catches this fault, and
        # passed on it. Nothing to keep where the fault had no effect.
        "declared_not_failed": [] if no_effect else [n for n in declared if n not in failed],
        "caught": bool(caught_by),
        "no_effect": no_effect,
        "evidence": evidence,
        "statuses": {r.name: r.status for r in results},
    }


def _effect(state: FinalState | None, clean: CleanSpread) -> dict:
    """How far the fault's final state is from the clean run's, against the clean spread."""
    if state is None or clean.state is None:
        return {"within_clean_spread": False, "why": "a run did not train: no evidence"}
    distance = numerics.tree_distance(state.adapters, clean.state.adapters)
    base_identical = state.base == clean.state.base
    return {
        "within_clean_spread": base_identical and numerics.within(distance, clean.allowed),
        "base_identical_to_clean_run": base_identical,
        "adapter_distance_to_clean_run": _number(distance),
        "clean_run_spread": _number(clean.spread),
        "allowed": _number(clean.allowed),
        "adapter_tensors": len(state.adapters),
    }


def _number(value: float):
    return value if math.isfinite(value) else str(value)


def run_selftest(
    source: ModelSource,
    settings: Settings,
    fault_names: list[str],
    on_fault: Callable[[dict], None] | None = None,
) -> dict:
    """The `selftest` report section: the clean run's results and one entry per fault."""
    clean_ctx, clean_results = _run(source, settings, None)
    # A second clean run measures how far equal recipes end apart on this backend.
    again_ctx, again_results = _run(source, settings, None)
    clean = CleanSpread.measure(final_state(clean_ctx), final_state(again_ctx))
    del clean_ctx, again_ctx
    entries = []
    for name in fault_names:
        fault = FAULTS[name]
        ctx, results = _run(source, settings, fault)
        entries.append(judge_fault(fault, results, final_state(ctx), clean))
        entries[-1]["reaches_user_code"] = fault.reaches(settings.recipe)
        if on_fault:
            on_fault(entries[-1])
    return {
        "clean": [r.to_dict() for r in clean_results],
        "clean_repeat": [r.to_dict() for r in again_results],
        "clean_spread": {
            "adapter_distance": _number(clean.spread),
            "allowed": _number(clean.allowed),
        },
        "faults": entries,
        "checks": list(suites.GATE),
        "summary": summarise(clean_results + again_results, entries),
        "recipe": settings.recipe.provenance(),
        # Under --recipe: faults in steps the user's object leaves to the correct recipe test
        # the harness's step; no bug of that kind can be in the user's code.
        "not_reaching_user_code": [
            {"name": e["name"], "steps": list(FAULTS[e["name"]].swapped_steps)}
            for e in entries
            if settings.recipe.user_steps and not e["reaches_user_code"]
        ],
    }


def selftest_report(settings: Settings, source: ModelSource, fault_names, on_fault=None) -> dict:
    """The whole self-test as a report document (kind "selftest"), with its real duration."""
    started, tic = now(), time.perf_counter()
    section = run_selftest(source, settings, fault_names, on_fault)
    report = report_header(
        settings, source, run_id=new_run_id(), kind="selftest", started_at=started
    )
    report["run"]["duration_s"] = round(time.perf_counter() - tic, 3)
    report["checks"] = section["clean"]
    report["summary"] = json_report.summarise(section["clean"])
    report["selftest"] = section
    return report


def summarise(clean_results: list, entries: list[dict]) -> dict:
    clean_bad = sorted({r.name for r in clean_results if r.status not in ("pass", "skip")})
    # Checks may raise where the fault itself makes MLX raise (a thawed 4-bit base has no
    # gradient): caught by a declared catcher's failure, that is still a catch. A fault whose
    # run only raised was judged by nothing: ERRORED, not escaped.
    missed = [e for e in entries if not e["caught"] and not e["no_effect"]]
    errored = [e["name"] for e in missed if e["errored"]]
    escaped = [e["name"] for e in missed if not e["errored"]]
    unkept = [
        {"fault": e["name"], "checks": e["declared_not_failed"]}
        for e in entries
        if e["declared_not_failed"]
    ]
    return {
        "faults": len(entries),
        "caught": sum(e["caught"] for e in entries),
        "no_effect": [e["name"] for e in entries if e["no_effect"]],
        "escaped": escaped,
        "errored": errored,
        "unkept_declarations": unkept,
        "clean_not_passing": clean_bad,
        "verdict": "fail" if escaped or clean_bad or unkept or errored else "pass",
    }


def markdown_matrix(section: dict) -> str:
    """The fault x check grid as a Markdown table (x = failed, . = passed, - = skipped,
    ! = a declared catcher that passed: a declaration this run did not keep)."""
    checks = section["checks"]
    marks = {"fail": "x", "error": "E", "warn": "w", "pass": ".", "skip": "-"}
    header = "| fault | caught | " + " | ".join(f"`{c}`" for c in checks) + " |"
    rule = "|---|---|" + "---|" * len(checks)
    rows = [header, rule]
    for entry in section["faults"]:
        unkept = set(entry.get("declared_not_failed", ()))
        cells = ["!" if c in unkept else marks[entry["statuses"][c]] for c in checks]
        rows.append(f"| `{entry['name']}` | {_verdict(entry)} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _verdict(entry: dict) -> str:
    if entry["caught"] or entry["no_effect"]:
        return "yes" if entry["caught"] else "no effect"
    return "**ERRORED**" if entry.get("errored") else "**ESCAPED**"


NO_CATCHER = "none: no observable effect"


def caught_table(section: dict | None = None) -> str:
    """Fault -> the checks that catch it, as Markdown. Without `section`: as the checks
    declare it (`Check.catches`; `lora-harness selftest --declared`, the README's table);
    with a self-test section: as that run measured it (the checks that failed). The two
    are equal exactly when every declaration held and nothing else failed."""
    rows = ["| fault | what goes wrong | caught by |", "|---|---|---|"]
    order = section["checks"] if section else suites.GATE
    for name, description, failed, verdict in _caught_rows(section):
        listed = ", ".join(f"`{c}`" for c in order if c in failed)
        cell = NO_CATCHER if verdict == "no effect" else listed
        if verdict in ("**ESCAPED**", "**ERRORED**"):
            cell = verdict + (f" (failed: {listed})" if listed else "")
        escaped = description.replace("|", "\\|")  # a pipe would end the cell
        rows.append(f"| `{name}` | {escaped} | {cell} |")
    return "\n".join(rows) + "\n"


def _caught_rows(section: dict | None):
    """(fault, description, failing checks, verdict) per fault: declared or measured."""
    if section is None:
        for fault in FAULTS.values():
            declared = suites.catchers(fault.name, suites.GATE)
            yield fault.name, fault.description, declared, "yes" if declared else "no effect"
        return
    for entry in section["faults"]:
        failed = entry["caught_by"] + entry["also_failed"]
        yield entry["name"], entry["description"], failed, _verdict(entry)
