"""Where every report-writing command puts its output: the same flags, the same files."""

from __future__ import annotations

import sys
from pathlib import Path

from lora_harness.core.files import write_atomic
from lora_harness.reports import json_report, render


def add_output_args(parser, default_out: str = "lora-harness-out") -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(default_out),
        help=f"folder for OUT/<run-id>/ with report.json, report.html, junit.xml (default ./{default_out})",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the report JSON to PATH, or - for stdout only"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def emit(report: dict, args, html: bool = True, path: Path | None = None) -> Path:
    """Write OUT/<run-id>/ HTML and JUnit, then report.json, then --json PATH|-; returns the path.

    report.json is written last: a run folder holding it is complete, so an interrupt
    while the HTML renders never leaves a verdict without the rest.
    """
    text = json_report.dumps(report)
    if path is None:
        path = args.out / report["run"]["id"] / "report.json"
    if html:
        render.write_beside(path, report, getattr(args, "history", None))
    write_atomic(path, text)
    if args.json == "-":
        sys.stdout.write(text)
    elif args.json:
        write_atomic(Path(args.json), text)
    return path
