"""`lora-harness guard`: run mlx_lm.lora's own trainer, checked as it runs, stopped when broken."""

from __future__ import annotations

import argparse
import sys
import time

from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.declared import describe
from lora_harness.core.errors import EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK
from lora_harness.core.files import write_atomic
from lora_harness.core.terminal import printable
from lora_harness.core.validation import Rule
from lora_harness.runs.validate import argtype

DEFAULT_CHECK_EVERY = 100
CHECK_EVERY = Rule(int, minimum=1)
EPILOG = """\
every mlx_lm.lora flag is accepted with its own name, and -c reads its YAML:
  lora-harness guard -c lora_config.yaml
  lora-harness guard --model ./Qwen2.5-7B-mlx --data ./data --iters 1000 --save-every 100
  lora-harness guard --model fixture:tiny --data ./data --num-layers -1 --iters 200 --check-every 50

checks at the start (structure), every --check-every steps (frozen base, gradient and
optimizer keys, finite values), at each checkpoint (+ the file, a generation probe) and at
the end; the first failure stops the run with exit 1. OUT/<run-id>/live.json is rewritten
while it runs; report.json, report.html and junit.xml when it ends.
"""


def register(commands) -> None:
    from lora_harness.runs.guard_args import mlx_lm_parser

    parser = commands.add_parser(
        "guard",
        help="run mlx_lm.lora's trainer with the checks, stop at the first failure",
        description="Train with mlx-lm's own trainer (mlx_lm.lora's flags and -c YAML), "
        "checking the run at its start, every N steps, at each checkpoint and at the end.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[mlx_lm_parser()],
        conflict_handler="resolve",
    )
    parser.add_argument(
        "--check-every",
        type=argtype(CHECK_EVERY),
        default=DEFAULT_CHECK_EVERY,
        metavar="N",
        help=describe("steps between periodic checks", CHECK_EVERY, DEFAULT_CHECK_EVERY),
    )
    parser.add_argument(
        "--check-resume",
        action="store_true",
        help="at the start, measure what stopping and resuming (--resume-adapter-file) loses",
    )
    parser.add_argument(
        "--inference-format",
        choices=("auto", "chat", "text"),
        default="auto",
        help="how the adapter will be prompted: chat (the chat template with the generation "
        "prompt), text (raw); auto: as mlx_lm.generate does (chat if the tokenizer has a template)",
    )
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from lora_harness.runs import guard_report as report
    from lora_harness.runs.guard_args import namespace
    from lora_harness.runs.guard_mlx_lm import GuardedRun
    from lora_harness.runs.run import new_run_id, now

    mlx_args = namespace(vars(args))
    run_id, started_at, started = new_run_id(), now(), time.perf_counter()
    folder = args.out / run_id
    command = ["lora-harness", *sys.argv[1:]]
    guarded = None

    def live():
        document = report.build(guarded, run_id, command, started_at, started, "running")
        write_atomic(folder / "live.json", _dumps(document))

    guarded = GuardedRun(
        mlx_args,
        args.check_every,
        on_report=live,
        check_resume=args.check_resume,
        inference_format=args.inference_format,
    )
    _say(
        args,
        f"lora-harness guard: training {mlx_args.model} for {mlx_args.iters} steps, "
        f"checking every {args.check_every} (live: {folder / 'live.json'})",
    )
    guarded.run()
    state = "stopped" if guarded.monitor and guarded.monitor.stopped else "finished"
    document = report.build(guarded, run_id, command, started_at, started, state)
    path = emit(document, args, path=folder / "report.json")
    live_done = folder / "live.json"
    write_atomic(live_done, _dumps(document))
    stop = document["guard"].get("stopped")
    if stop:
        print(
            printable(
                f"lora-harness guard: STOPPED at iteration {stop['iteration']} "
                f"({stop['phase']}): {stop['check']}: {stop['message']} -> {stop['remedy']}"
            ),
            file=sys.stderr,
        )
    summary = document["summary"]
    _say(
        args,
        f"lora-harness guard: {summary['verdict']} ({summary['pass']} passed, "
        f"{summary['fail']} failed, {summary['skip']} skipped); report: {path}",
    )
    if summary["fail"]:
        return EXIT_CHECK_FAILED
    return EXIT_INTERNAL if summary["error"] else EXIT_OK


def _dumps(document: dict) -> str:
    from lora_harness.reports import json_report

    return json_report.dumps(document)


def _say(args, line: str) -> None:
    if not args.quiet:
        print(printable(line), file=sys.stderr)  # model and data paths: escapes shown
