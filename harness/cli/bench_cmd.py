"""`lora-harness bench`: speed and memory of the trainer and checks, as ratios from one run."""

from __future__ import annotations

from lora_harness.bench import bench, bench_process
from lora_harness.cli import progress
from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.errors import EXIT_OK, InputError
from lora_harness.models.sources import resolve
from lora_harness.runs import options, validate
from lora_harness.runs.run import new_run_id, report_header, settings_from

MEASUREMENTS = [
    "trainer_vs_mlx_lm",
    "check_overhead",
    "lora_step_vs_forward",
    "memory",
    "structure_at_scale",
    "gate_wall",
]


def register(commands) -> None:
    parser = commands.add_parser(
        "bench",
        help="measure the trainer against mlx-lm, check overhead, memory and wall times",
        description=(
            "Every figure is a ratio or a distribution measured in this run on this machine: "
            + ", ".join(MEASUREMENTS)
            + ". Goals: trainer/mlx-lm >= 1.00, check overhead <= 1.02."
        ),
    )
    options.add_to_argparse(parser, options.MODEL_OPTIONS + options.LORA_OPTIONS)
    parser.add_argument(
        "--pairs", type=int, default=5, help="interleaved pairs per comparison (default 5)"
    )
    parser.add_argument(
        "--only", action="append", choices=MEASUREMENTS, help="run only this measurement"
    )
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def _measure(name: str, source, settings, pairs: int) -> dict:
    lora, steps = settings.lora, max(settings.lora.iters, 8)
    if name == "trainer_vs_mlx_lm":
        return bench.trainer_vs_mlx_lm(source, lora, steps, pairs)
    if name == "check_overhead":
        return bench.check_overhead(source, lora, steps * 4, pairs)
    if name == "lora_step_vs_forward":
        return bench.lora_step_vs_forward(source, lora, reps=20)
    if name == "memory":
        return bench.memory(source, lora, steps * 4)
    if name == "structure_at_scale":
        return bench_process.structure_at_scale()
    return bench_process.gate_wall(settings.model or "fixture:tiny")


def handle(args) -> int:
    if args.pairs < 1:
        raise InputError("--pairs must be at least 1")
    validate.check_sft_only(vars(args), "bench")
    settings = settings_from({**vars(args), "suite": None, "check": None})
    source = resolve(settings.model)
    if not source.has_weights:
        raise InputError(f"{source.spec} is shape-only; bench trains, so use a model with weights")
    show = progress.Progress(0, enabled=not args.quiet)
    results = {}
    for name in args.only or MEASUREMENTS:
        show.note(f"bench: {name} ...")
        results[name] = _measure(name, source, settings, args.pairs)
        ratio = results[name].get("ratio")
        show.note(f"  {name}: ratio {ratio:.3f}" if isinstance(ratio, float) else f"  {name}: done")
    report = report_header(settings, source, run_id=new_run_id(), kind="bench")
    report["bench"] = results
    path = emit(report, args, html=False)
    show.note(f"report: {path}")
    return EXIT_OK
