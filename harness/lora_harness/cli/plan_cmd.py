"""`lora-harness plan`: will this LoRA run fit this machine's memory, and what to change if not."""

from __future__ import annotations

import argparse
import sys

from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.errors import EXIT_CHECK_FAILED, EXIT_OK
from lora_harness.core.terminal import printable
from lora_harness.core.validation import Rule
from lora_harness.runs import options
from lora_harness.runs.validate import argtype

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
    options.add_to_argparse(parser, options.MODEL_OPTIONS + options.LORA_OPTIONS)
    add = parser.add_argument
    add("--grad-checkpoint", action="store_true", help="plan with gradient checkpointing")
    add(
        "--ranks",
        type=argtype(Rule(int, minimum=1)),
        metavar="N",
        help="data-parallel ranks (mlx.launch -n N): predict one rank's memory",
    )
    add(
        "--q-bits",
        type=argtype(Rule(int, minimum=2, maximum=8)),
        metavar="B",
        help="plan as if the base were quantised to B bits, as mlx_lm.convert -q --q-bits B",
    )
    add(
        "--q-group-size",
        type=argtype(Rule(int, minimum=16)),
        default=64,
        metavar="G",
        help="with --q-bits: the quantisation group size (default 64, mlx_lm.convert's)",
    )
    add(
        "--memory-gb",
        type=argtype(Rule(float, above=0)),
        metavar="GB",
        help="judge against this budget instead of this machine's memory",
    )
    add(
        "--calibrate",
        action="store_true",
        help="also run a few real steps at the planned shape: tokens/s, measured peak, "
        "and predicted / measured",
    )
    add(
        "--calibrate-steps",
        type=argtype(Rule(int, minimum=2)),
        default=3,
        metavar="N",
        help="steps for --calibrate (default 3; the first compiles)",
    )
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from lora_harness.plan import report

    document = report.build(
        vars(args), calibrate_steps=args.calibrate_steps if args.calibrate else 0
    )
    path = emit(document, args, html=False)
    if args.json != "-" and not args.quiet:
        for line in report.lines(document):  # the model spec is a path: escapes shown
            print(printable(line), file=sys.stderr)
        print(f"report: {printable(path)}", file=sys.stderr)
    verdict = document["plan"]["verdict"]
    return EXIT_CHECK_FAILED if verdict == "does not fit" else EXIT_OK
