"""`lora-harness selftest`: prove, on this machine and MLX, that the checks catch the faults."""

from __future__ import annotations

import argparse
from pathlib import Path

from lora_harness.cli import progress
from lora_harness.cli.output import add_output_args, emit
from lora_harness.core.errors import EXIT_CHECK_FAILED, EXIT_OK, InputError
from lora_harness.core.files import write_atomic
from lora_harness.core.words import plural
from lora_harness.lora.faults import ALL_FAULTS, FAULTS
from lora_harness.models.sources import resolve
from lora_harness.runs import options
from lora_harness.runs.given import Given
from lora_harness.runs.run import settings_from
from lora_harness.runs.selftest import caught_table, markdown_matrix, selftest_report


def register(commands) -> None:
    parser = commands.add_parser(
        "selftest",
        help="inject every known LoRA fault and show which checks catch it",
        description=(
            "Runs the gate suite on the clean recipe and on each fault of the catalogue "
            "(see --list). Exit 1 if any fault with an observable effect escapes, or the "
            "clean run does not pass cleanly."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    options.add_to_argparse(parser, options.SELFTEST_OPTIONS)
    parser.add_argument(
        "--fault", action="append", metavar="NAME", help="only this fault (repeatable)"
    )
    parser.add_argument("--list", action="store_true", help="list the faults and exit")
    parser.add_argument(
        "--declared",
        action="store_true",
        help="print fault -> catching checks as the checks declare it (the README's table) "
        "and exit; the self-test run verifies every declaration",
    )
    parser.add_argument(
        "--markdown",
        metavar="PATH",
        type=Path,
        help="write fault -> catching checks as measured, and the fault x check grid, as Markdown",
    )
    add_output_args(parser)
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    if args.list:
        for fault in ALL_FAULTS.values():
            print(f"{fault.name:<32}{fault.description}")
        return EXIT_OK
    if args.declared:
        print(caught_table(), end="")
        return EXIT_OK
    names = args.fault or list(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise InputError(f"unknown fault {unknown[0]!r}; see lora-harness selftest --list")
    settings = settings_from(Given.of(args))
    source = resolve(settings.model)
    if not source.has_weights:
        raise InputError(
            f"{source.spec} is shape-only; the self-test trains, so use a model with weights"
        )
    show = progress.Progress(0, enabled=not args.quiet)
    show.note(f"lora-harness selftest: clean run + {plural(len(names), 'fault')} on {source.spec}")
    if line := progress.recipe_line(settings.recipe.provenance()):
        show.note(line)
    report = selftest_report(settings, source, names, on_fault=lambda e: show.note(_fault_line(e)))
    section = report["selftest"]
    path = emit(report, args)
    if args.markdown:
        write_atomic(args.markdown, caught_table(section) + "\n" + markdown_matrix(section))
    summary = section["summary"]
    errored = f"errored: {', '.join(summary['errored'])}; " if summary["errored"] else ""
    show.note(
        f"selftest: {summary['caught']}/{summary['faults']} caught, no effect: "
        f"{', '.join(summary['no_effect']) or 'none'}, escaped: {', '.join(summary['escaped']) or 'none'}; "
        f"{errored}"
        f"clean run {'clean' if not summary['clean_not_passing'] else 'NOT clean: ' + ', '.join(summary['clean_not_passing'])}"
    )
    for unkept in summary["unkept_declarations"]:
        show.note(
            f"declared but passed: {', '.join(unkept['checks'])} on {unkept['fault']} "
            "(each declares it catches this fault; a check blinded, or another MLX/model)"
        )
    if unreached := section["not_reaching_user_code"]:
        show.note(_unreached_line(unreached))
    show.note(f"report: {path}")
    return EXIT_CHECK_FAILED if summary["verdict"] == "fail" else EXIT_OK


def _fault_line(entry: dict) -> str:
    if entry["caught"]:
        also = f"; also failed: {', '.join(entry['also_failed'])}" if entry["also_failed"] else ""
        also += f"; errored: {', '.join(entry['errored'])}" if entry["errored"] else ""
        return f"  CAUGHT    {entry['name']:<30} by {', '.join(entry['caught_by'])}{also}"
    if entry["no_effect"]:
        ev = entry["evidence"]
        return (
            f"  NO EFFECT {entry['name']:<30} adapters {ev['adapter_distance_to_clean_run']:.2g} "
            f"from the clean run (two clean runs: {ev['clean_run_spread']:.2g}), base identical"
        )
    declared = ", ".join(entry["expected_checks"]) or "no check declares it"
    if entry["errored"]:
        raised = ", ".join(entry["errored"])
        return f"  ERRORED   {entry['name']:<30} raised in {raised} (a crash judges nothing); declared catchers: {declared}"
    return f"  ESCAPED   {entry['name']:<30} declared catchers: {declared}"


def _unreached_line(unreached: list[dict]) -> str:
    listed = ", ".join(f"{u['name']} ({'/'.join(u['steps'])})" for u in unreached)
    return (
        f"could not reach your code: {plural(len(unreached), 'fault')} swap steps your recipe "
        f"leaves to the correct one, so they test the harness's steps, not yours: {listed}"
    )
