"""`lora-harness bench`: speed and memory of the trainer and checks, as ratios from one run."""

from __future__ import annotations

from lora_harness.bench import bench, bench_process
from lora_harness.cli import progress
from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.errors import EXIT_OK, InputError
from lora_harness.models.sources import resolve
from lora_harness.runs import options
from lora_harness.runs.given import Given
from lora_harness.runs.run import new_run_id, report_header, settings_from

MEASUREMENTS = [
    "trainer_vs_mlx_lm",
    "check_overhead",
    "fingerprint",
    "lora_step_vs_forward",
    "memory",
    "structure_at_scale",
    "gate_wall",
    "plan_accuracy",
]
# Whole training runs per side, so asked for by name: lora-harness bench --only guard_overhead
OPT_IN = ["guard_overhead"]


def register(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="measure the trainer against mlx-lm, check overhead, memory and wall times",
        description=(
            "Every figure is a ratio or a distribution measured in this run on this machine: "
            + ", ".join(MEASUREMENTS)
            + ". Goals: trainer/mlx-lm >= 1.00, check overhead <= 1.02, fingerprint >= 0.5 of "
            "a plain read of the weights. Use --model random:qwen2.5-7b to validate a machine "
            "at 7B scale without a download."
        ),
    )
    options.add_to_argparse(parser, options.BENCH_OPTIONS)
    parser.add_argument(
        "--only",
        action="append",
        choices=MEASUREMENTS + OPT_IN,
        help="run only this measurement (guard_overhead only when asked for)",
    )
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def _measure(name: str, source, settings, pairs: int) -> dict:
    lora, steps = settings.lora, max(settings.lora.iters, 8)
    if name == "trainer_vs_mlx_lm":
        return bench.trainer_vs_mlx_lm(source, lora, steps, pairs)
    if name == "check_overhead":
        return bench.check_overhead(source, lora, steps * 4, pairs)
    if name == "fingerprint":
        return bench.fingerprint(source, lora, reps=max(pairs, 5))
    if name == "lora_step_vs_forward":
        return bench.lora_step_vs_forward(source, lora, reps=20)
    if name == "memory":
        return bench.memory(source, lora, steps * 4)
    if name == "guard_overhead":
        from lora_harness.bench.guard_bench import guard_overhead
        from lora_harness.cli.guard_cmd import DEFAULT_CHECK_EVERY

        if source.path is None:
            raise InputError("guard_overhead trains a model folder: use fixture:tiny or a path")
        return guard_overhead(source, lora, 3 * DEFAULT_CHECK_EVERY, pairs, DEFAULT_CHECK_EVERY)
    if name == "plan_accuracy":
        from lora_harness.bench import plan_bench

        return plan_bench.measure(source, lora)
    if name == "structure_at_scale":
        return bench_process.structure_at_scale()
    return bench_process.gate_wall(settings.model or "fixture:tiny")


def describe(result: dict) -> str:
    """One line: the ratio, its interval and verdict, and the seconds behind it."""
    ratio = result.get("ratio")
    if "swap" in result:
        swap = result["swap"]
        pages = (
            f"{swap['pages_in']} in, {swap['pages_out']} out"
            if swap["swapped"] is not None
            else swap["reason"]
        )
        return f"peak {result['peak_memory_gb']:.2f} GB; swapped: {swap['swapped']} ({pages})"
    if not isinstance(ratio, float):
        return "done"
    parts = [f"ratio {ratio:.3f}"]
    if spread := result.get("spread"):
        low, high = spread["interval"]
        parts.append(f"[{low:.3f}, {high:.3f}] over {spread['pairs']} pairs: {spread['verdict']}")
    seconds = result.get("seconds", {})
    parts.append(", ".join(f"{k} {v:.4g}" for k, v in seconds.items()))
    if "gb_per_second" in result:
        parts.append(
            f"{result['gb_per_second']:.1f} GB/s vs plain read {result['read_gb_per_second']:.1f} "
            f"GB/s, extra peak {result['extra_peak_bytes'] / 1e6:.1f} MB ({result['backend']})"
        )
    if cost := result.get("steps_per_report_1_cost"):
        parts.append(f"mlx-lm reporting every step costs x{cost['ratio']:.3f}")
    if "ratio_without_compile" in result:
        parts.append(f"without compile {result['ratio_without_compile']:.3f}")
    if "within_goal" in result and result.get("rows"):
        parts.append(
            f"{result['within_goal']}/{len(result['rows'])} in [0.85, 1.15]: "
            + ", ".join(_plan_row(r) for r in result["rows"])
        )
    if reading := result.get("reading"):
        parts.append(reading)
    return "; ".join(p for p in parts if p)


def _plan_row(row: dict) -> str:
    label = f"B{row['batch_size']} T{row['seq_length']}{' ckpt' if row['grad_checkpoint'] else ''}"
    if "ratio" not in row:
        return f"{label} {row.get('error', 'not measured')}"
    miss = f" (miss: {row['miss']['nearest_term']})" if "miss" in row else ""
    return f"{label} {row['ratio']:.3f}{miss}"


def handle(args) -> int:
    settings = settings_from(Given.of(args))
    source = resolve(settings.model)
    if not source.has_weights:
        raise InputError(f"{source.spec} is shape-only; bench trains, so use a model with weights")
    show = progress.Progress(0, enabled=not args.quiet)
    results = {}
    for name in args.only or MEASUREMENTS:
        show.note(f"bench: {name} ...")
        results[name] = _measure(name, source, settings, args.pairs)
        show.note(f"  {name}: {describe(results[name])}")
    report = report_header(settings, source, run_id=new_run_id(), kind="bench")
    report["bench"] = results
    path = emit(report, args, html=False)
    show.note(f"report: {path}")
    return EXIT_OK
