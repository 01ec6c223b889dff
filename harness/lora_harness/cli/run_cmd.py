"""`lora-harness run`: train a few LoRA steps, run the suite, write the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_harness.cli import progress
from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_RANK_ERROR,
    InputError,
)
from lora_harness.core.terminal import printable
from lora_harness.core.words import plural
from lora_harness.reports import history
from lora_harness.runs import distributed, options
from lora_harness.runs.given import Given
from lora_harness.runs.run import execute, prepare, save_baseline, settings_from, write_run_folder

EPILOG = """\
examples:
  lora-harness run                                   # gate suite on the built-in fixture
  lora-harness run --model shape:qwen2.5-7b --suite structure --json -
  lora-harness run --model ./Qwen2.5-7B-mlx --num-layers 16 --expect trainable_arrays=224
"""


def register(commands) -> None:
    parser = commands.add_parser(
        "run",
        help="run a suite of health checks",
        description="Prepare a LoRA model with the working recipe, train a few steps and check it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_to_argparse(parser, options.RUN_OPTIONS)
    parser.add_argument(
        "--save-baseline",
        metavar="FILE",
        type=Path,
        help="store this run's voice score in FILE (keyed by model, data and scorer) for --baseline",
    )
    parser.add_argument(
        "--history",
        type=Path,
        metavar="DIR",
        help="append this run's summary to a per-machine history in DIR; the HTML shows trends",
    )
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    settings = settings_from(Given.of(args))
    rank = distributed.rank() if settings.distributed else 0
    writer = rank == 0  # one report for all ranks, from rank 0
    show = progress.Progress(settings.lora.iters, enabled=not args.quiet and writer)
    show.note(f"lora-harness: preparing {settings.model or 'fixture:tiny'}")
    if line := progress.recipe_line(settings.recipe.provenance()):
        show.note(line)
    ctx = prepare(settings, step_callbacks=[show.on_step])
    if args.save_baseline and not ctx.source.has_weights:
        raise InputError(
            f"--save-baseline needs a run that generates; {ctx.source.spec} is shape-only, "
            "so use a model with weights"
        )
    show.note(f"running {plural(len(settings.check_names), 'check')}")
    report = execute(settings, ctx, on_result=show.on_result)
    if settings.distributed and ctx.training_error is not None:
        return _rank_failed(report, ctx, args, rank, ctx.training_error)
    if not writer:
        distributed.barrier(settings.distributed_timeout)  # a launcher ends all when one exits
        if not args.quiet:  # each rank's log says its own verdict; rank 0's report has them all
            line = progress.summary_line(report["summary"])
            print(f"lora-harness: rank {rank}: {line}; report written by rank 0", file=sys.stderr)
        return exit_code(report["summary"])
    path = emit(report, args, path=write_run_folder(report, ctx, args.out, write_report=False))
    if args.history:  # only once the report it points to exists
        history.append(args.history, report)
    if args.save_baseline and report["summary"]["verdict"] != "pass":
        # Said even with --quiet: the user asked for a file that is not written.
        print(
            f"lora-harness: baseline NOT saved to {printable(args.save_baseline)}: "
            "the run did not pass",
            file=sys.stderr,
        )
    elif args.save_baseline:
        key = save_baseline(report, args.save_baseline)
        show.note(f"baseline saved to {args.save_baseline} under {key}")
    show.note(progress.summary_line(report["summary"]))
    if settings.distributed:
        distributed.barrier(settings.distributed_timeout)
    show.note(f"report: {path} (+ report.html, junit.xml)")
    return exit_code(report["summary"])


def _rank_failed(report: dict, ctx, args, rank: int, error: Exception) -> int:
    """This rank's own error: its report, whatever its rank, one line, and no more collectives.

    The other ranks wait inside a collective this rank will never join; they see it leave
    as a lost peer (exit 5), so only this rank's report and line name the cause.
    """
    path = emit(report, args, path=write_run_folder(report, ctx, args.out))
    message = printable(" ".join(f"{error.__class__.__name__}: {error}".split()))
    print(
        f"lora-harness: rank {rank}: training failed on this rank: {message} "
        f"(this rank's own error, not a lost peer); report: {path}",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_RANK_ERROR


def exit_code(summary: dict) -> int:
    if summary["fail"]:
        return EXIT_CHECK_FAILED
    if summary["error"]:
        return EXIT_INTERNAL
    return EXIT_OK
