"""`lora-harness report`: render existing report JSON files as HTML and JUnit."""

from __future__ import annotations

from pathlib import Path

from lora_harness.core.errors import EXIT_OK, InputError
from lora_harness.core.terminal import printable
from lora_harness.reports import json_report, render, screenshot
from lora_harness.runs import validate


def register(commands) -> None:
    parser = commands.add_parser(
        "report",
        help="render report.json files (one run or many hosts) as HTML and JUnit XML",
        description="Render from the JSON reports only; several files make one fleet page.",
    )
    parser.add_argument("reports", nargs="+", type=Path, help="report.json files")
    parser.add_argument(
        "--html", type=Path, metavar="PATH", help="write a self-contained HTML page"
    )
    parser.add_argument("--junit", type=Path, metavar="PATH", help="write JUnit XML")
    parser.add_argument(
        "--history", type=Path, metavar="DIR", help="add per-machine trends from DIR"
    )
    parser.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="also save a PNG of the HTML (needs Chromium)",
    )
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    validate.check_options(vars(args))
    if not args.html and not args.junit:
        raise InputError("nothing to write: pass --html PATH and/or --junit PATH")
    documents = [json_report.load(path, json_report.RUN_KINDS) for path in args.reports]
    if args.screenshot and not args.html:
        raise InputError("--screenshot renders the HTML page: pass --html PATH too")
    if args.html:
        print(f"html: {printable(render.write_html(args.html, documents, args.history))}")
    if args.screenshot:
        print(f"screenshot: {printable(screenshot.take(args.html, args.screenshot))}")
    if args.junit:
        print(f"junit: {printable(render.write_junit(args.junit, documents))}")
    return EXIT_OK
