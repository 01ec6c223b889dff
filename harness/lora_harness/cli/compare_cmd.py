"""`lora-harness compare A.json B.json`: what changed between two runs, with regression gates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lora_harness.core.errors import EXIT_CHECK_FAILED, EXIT_OK, InputError
from lora_harness.core.files import write_atomic
from lora_harness.reports import compare, json_report
from lora_harness.runs import validate


def register(commands) -> None:
    parser = commands.add_parser(
        "compare",
        help="status changes and metric deltas between two reports",
        description=(
            "Compare report A (before) with B (after). With --fail-on METRIC:PCT exit 1 when B "
            f"is worse than A by more than PCT percent. Metrics: {', '.join(compare.METRICS)}."
        ),
    )
    parser.add_argument("before", type=Path, help="report.json of the earlier run")
    parser.add_argument("after", type=Path, help="report.json of the later run")
    parser.add_argument(
        "--fail-on", action="append", metavar="METRIC:PCT", help="e.g. tokens_per_second:5%%"
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write the comparison JSON to PATH, or - for stdout only"
    )
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    validate.check_options(vars(args))
    gates = compare.parse_fail_on(args.fail_on)
    before, after = json_report.load(args.before), json_report.load(args.after)
    if (before.get("kind") == "fleet") != (after.get("kind") == "fleet"):
        raise InputError(
            "compare a run report with a run report, or a fleet summary with a fleet summary"
        )
    if before.get("kind") == "fleet":
        result = compare.compare_fleets(before, after, gates)
    else:
        result = compare.compare(before, after, gates)
    text = json.dumps(json_report.json_safe(result), indent=2) + "\n"
    if args.json == "-":
        sys.stdout.write(text)
    else:
        print(compare.describe(result))
        if args.json:
            write_atomic(Path(args.json), text)
    return EXIT_CHECK_FAILED if result["regressions"] else EXIT_OK
