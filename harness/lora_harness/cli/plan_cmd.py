"""`lora-harness plan`: will this LoRA run fit this machine's memory, and what to change if not."""

from __future__ import annotations

import argparse
import sys

from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.errors import EXIT_CHECK_FAILED, EXIT_OK
from lora_harness.core.terminal import printable
from lora_harness.runs import options
from lora_harness.runs.given import Given

EPILOG = """\
examples:
  lora-harness plan --model random:qwen2.5-7b --batch-size 4 --max-seq-length 2048
  lora-harness plan -c lora_config.yaml --model ~/models/Qwen2.5-7B-Instruct-mlx
  lora-harness plan --model shape:llama-3.1-8b --memory-gb 64 --json -
  lora-harness plan --model fixture:tiny --calibrate

Predicts the peak memory of a training step before any weight is loaded, term by term,
and compares it with this machine's memory (a Mac: Metal's recommended working set; CUDA:
the device's memory; else /proc/meminfo). When it does not fit, the cheapest change that
fits is found by predicting again. Exit: 0 fits or tight, 1 does not fit, 2 bad input.
"""


def register(commands) -> None:
    parser = commands.add_parser(
        "plan",
        help="predict a LoRA run's peak memory and whether it fits this machine",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_to_argparse(parser, options.PLAN_OPTIONS)
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from lora_harness.plan import report

    given = Given.of(args)
    document = report.build(given, calibrate_steps=given.calibrate_steps if given.calibrate else 0)
    path = emit(document, args, html=False)
    if args.json != "-" and not args.quiet:
        for line in report.lines(document):  # the model spec is a path: escapes shown
            print(printable(line), file=sys.stderr)
        print(f"report: {printable(path)}", file=sys.stderr)
    verdict = document["plan"]["verdict"]
    return EXIT_CHECK_FAILED if verdict == "does not fit" else EXIT_OK
