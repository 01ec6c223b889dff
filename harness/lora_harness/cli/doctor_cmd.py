"""`lora-harness doctor --model M --adapter-path A`: check an adapter trained elsewhere."""

from __future__ import annotations

from pathlib import Path

from lora_harness.cli import progress
from lora_harness.cli.output import add_output_args, emit
from lora_harness.cli.run_cmd import exit_code
from lora_harness.core.errors import InputError
from lora_harness.lora import expectations
from lora_harness.models.sources import resolve
from lora_harness.runs import options, suites, validate
from lora_harness.runs.doctor import DoctorContext
from lora_harness.runs.given import Given
from lora_harness.runs.run import Settings, execute, recipe_for


def register(commands) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check an adapter folder written by mlx_lm.lora or this harness",
        description=(
            "Reads adapter_config.json and adapters.safetensors, rebuilds the LoRA model as the "
            "config says and runs every check that applies to an already-trained adapter: "
            + ", ".join(suites.DOCTOR)
            + "."
        ),
    )
    options.add_to_argparse(parser, options.DOCTOR_OPTIONS)
    parser.add_argument("--adapter-path", type=Path, required=True, help="the adapter folder")
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    validate.check_options(vars(args))
    given = Given.of(args)
    source = resolve(given.model)
    if not source.has_weights:
        raise InputError(
            f"{source.spec} is shape-only; the doctor runs the adapter, so use a model with weights"
        )
    ctx = DoctorContext(
        source,
        args.adapter_path,
        pins=expectations.parse_pins(given.expect or []),
        data_dir=given.data,
        generation_settings=given.generation_settings(),
        recipe=recipe_for(given),
    )
    ctx.model.expectations, ctx.adapter.tensors, ctx.model.probe_batch  # noqa: B018  (bad input fails now)
    settings = Settings(
        model=given.model,
        lora=ctx.lora,
        pins=ctx.model.pins,
        suite="doctor",
        check_names=suites.DOCTOR,
        data_dir=given.data,
        generation=ctx.generation.settings,
    )
    show = progress.Progress(0, enabled=not args.quiet)
    show.note(f"lora-harness doctor: {args.adapter_path} on {source.spec}")
    report = execute(settings, ctx, on_result=show.on_result)
    report["artifacts"]["adapter_path"] = str(args.adapter_path)
    path = emit(report, args)
    show.note(progress.summary_line(report["summary"]))
    show.note(f"report: {path} (+ report.html, junit.xml)")
    return exit_code(report["summary"])
