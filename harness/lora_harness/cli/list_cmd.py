"""`lora-harness list`: the checks and suites with their one-line summaries."""

from __future__ import annotations

from lora_harness.core.errors import EXIT_OK
from lora_harness.core.words import plural
from lora_harness.runs.suites import DEFAULT_SUITE, SUITES, all_checks


def register(commands) -> None:
    parser = commands.add_parser("list", help="list checks and suites")
    parser.add_argument("--verbose", "-v", action="store_true", help="also show symptom and remedy")
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print the symptom -> check -> remedy table (the README's, regenerated from here)",
    )
    parser.set_defaults(handler=handle)


def markdown_table() -> str:
    """One row per check, in suite order: the symptom a user sees, the check, its remedy."""
    checks, rows, seen = all_checks(), [], set()
    ordered = [n for suite in SUITES.values() for n in suite.names] + sorted(checks)
    for name in ordered:
        if name in seen or name not in checks:
            continue
        seen.add(name)
        suites = ", ".join(s for s, suite in SUITES.items() if name in suite.names)
        check = checks[name]
        cells = [check.symptom, f"`{name}` ({suites or 'no suite'})", check.remedy]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    header = "| symptom you see | check that catches it (suites) | remedy |\n|---|---|---|\n"
    return header + "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    # a pipe would end the table cell (GFM reads \| as a literal pipe, also inside code)
    return " ".join(text.split()).replace("|", "\\|")


def handle(args) -> int:
    if args.markdown:
        print(markdown_table(), end="")
        return EXIT_OK
    checks = all_checks()
    print("Suites:")
    for name, suite in SUITES.items():
        summary = suite.summary
        if name == DEFAULT_SUITE and "(default)" not in summary:
            summary += " (default)"
        print(f"  {name:<12}{summary}; {plural(len(suite.checks), 'check')}")
    print("\nChecks:")
    width = max(len(name) for name in checks) + 2
    for name in sorted(checks):
        check = checks[name]
        suites = ",".join(s for s, suite in SUITES.items() if name in suite.names)
        print(f"  {name:<{width}}{check.summary} [{suites}]")
        if args.verbose:
            print(f"  {'':<{width}}symptom: {check.symptom}")
            print(f"  {'':<{width}}remedy:  {check.remedy}")
    return EXIT_OK
