"""`lora-harness`: one file per subcommand; this module wires them and maps errors to exit codes.

Exit codes: 0 every check passed, 1 a check failed, 2 bad input or usage, 3 an internal
error (a crash of the harness itself, or a check that raised); `run --distributed` adds
5 (another rank died or hung) and 6 (this rank's own error; its report says which).
"""

from __future__ import annotations

import argparse
import os
import sys

from lora_harness.core.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, InputError

DESCRIPTION = """\
Health checks for LoRA fine-tuning with MLX. Trains a few LoRA steps with the working
recipe (freeze -> linear_to_lora_layers -> unfreeze adapter keys -> optimizer.init on
trainable parameters -> nn.value_and_grad) and checks the invariants that silent LoRA
bugs break: trainable counts, frozen base weights, gradients, optimizer state, loss,
<|endoftext|> spam, the voice score, and the adapter files mlx-lm reads and fuses.

Exit codes: 0 all checks passed, 1 a check failed, 2 bad input, 3 internal error.
"""


def build_parser() -> argparse.ArgumentParser:
    from lora_harness.cli import (
        bench_cmd,
        compare_cmd,
        doctor_cmd,
        fixture_cmd,
        list_cmd,
        remote_cmd,
        report_cmd,
        run_cmd,
        selftest_cmd,
        train_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="lora-harness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        run_cmd,
        selftest_cmd,
        train_cmd,
        bench_cmd,
        report_cmd,
        compare_cmd,
        doctor_cmd,
        list_cmd,
        remote_cmd,
        fixture_cmd,
    ):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.handler(args)
    except InputError as error:
        print(f"lora-harness: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("lora-harness: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the last line of defence: one line, not a traceback
        if args.debug or os.environ.get("LORA_HARNESS_DEBUG"):
            raise
        print(
            f"lora-harness: internal error: {error.__class__.__name__}: {error} "
            "(rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
