"""`lora-harness`: one file per subcommand; this module wires them and maps errors to exit codes.

Exit codes: 0 every check passed, 1 a check failed, 2 bad input or usage, 3 an internal
error (a crash of the harness itself, or a check that raised); `run --distributed` adds
5 (another rank died or hung) and 6 (this rank's own error; its report says which);
130 on Ctrl-C, 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys

from lora_harness.core import paths
from lora_harness.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
)
from lora_harness.core.terminal import printable
from lora_harness.core.version import __version__

DESCRIPTION = """\
Health checks for LoRA fine-tuning with MLX. Trains a few LoRA steps with the working
recipe (freeze -> linear_to_lora_layers -> unfreeze adapter keys -> optimizer.init on
trainable parameters -> nn.value_and_grad) and checks the invariants that silent LoRA
bugs break: trainable counts, frozen base weights, gradients, optimizer state, loss,
<|endoftext|> spam, the voice score, and the adapter files mlx-lm reads and fuses.

Exit codes: 0 all checks passed, 1 a check failed, 2 bad input, 3 internal error.
"""


class OneLineParser(argparse.ArgumentParser):
    """Usage errors in one line that says where help is, like every other bad input."""

    def error(self, message: str):
        # A rule checked while parsing reads as one checked after: "--ranks must be >= 1, ...".
        message = re.sub(r"^argument (--[\w-]+)(?:/-\w)?: must be ", r"\1 must be ", message)
        print(f"lora-harness: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so cleanup runs exactly as it does for Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def build_parser() -> argparse.ArgumentParser:
    from lora_harness.cli import (
        bench_cmd,
        compare_cmd,
        doctor_cmd,
        fixture_cmd,
        guard_cmd,
        list_cmd,
        plan_cmd,
        remote_cmd,
        report_cmd,
        run_cmd,
        selftest_cmd,
        train_cmd,
    )

    parser = OneLineParser(
        prog="lora-harness",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (
        run_cmd,
        guard_cmd,
        selftest_cmd,
        train_cmd,
        bench_cmd,
        plan_cmd,
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
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        paths.check_argv(argv)
        args = parser.parse_args(argv)
    except InputError as error:
        print(f"lora-harness: error: {_one_line(error)}", file=sys.stderr)
        return error.exit_code
    except SystemExit as done:  # --help (0) or a usage error (2), already printed
        return done.code if isinstance(done.code, int) else EXIT_BAD_INPUT
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    previous = _on_sigterm(_terminate)
    try:
        # Before any model loads: a path that cannot be written fails now, not after training.
        paths.check_outputs(vars(args), args.command)
        return args.handler(args)
    except InputError as error:
        print(f"lora-harness: error: {_one_line(error)}", file=sys.stderr)
        return error.exit_code
    except Terminated:
        print("lora-harness: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("lora-harness: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `lora-harness list | head -1`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # the last line of defence: one line, not a traceback
        if isinstance(error, OSError) and error.errno in paths.ENVIRONMENT_ERRNOS:
            # A full disk or a folder made read-only mid-run: the machine, not the harness.
            print(f"lora-harness: error: {_one_line(paths.describe(error))}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if args.debug or os.environ.get("LORA_HARNESS_DEBUG"):
            raise
        print(
            f"lora-harness: internal error: {error.__class__.__name__}: {_one_line(error)} "
            "(rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            _on_sigterm(previous)


def _on_sigterm(handler):
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        return None


def _one_line(error: Exception) -> str:
    return printable(" ".join(str(error).split()))


if __name__ == "__main__":
    sys.exit(main())
