"""`lora-harness list`: the checks and suites with their one-line summaries."""

from __future__ import annotations

from lora_harness.core.errors import EXIT_OK
from lora_harness.core.words import plural
from lora_harness.runs.suites import DEFAULT_SUITE, SUITES, all_checks


def register(commands) -> None:
    parser = commands.add_parser("list", help="list checks and suites")
    parser.add_argument("--verbose", "-v", action="store_true", help="also show symptom and remedy")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    checks = all_checks()
    print("Suites:")
    for name, suite in SUITES.items():
        summary = suite["summary"]
        if name == DEFAULT_SUITE and "(default)" not in summary:
            summary += " (default)"
        print(f"  {name:<12}{summary}; {plural(len(suite['checks']), 'check')}")
    print("\nChecks:")
    width = max(len(name) for name in checks) + 2
    for name in sorted(checks):
        check = checks[name]
        suites = ",".join(s for s, suite in SUITES.items() if name in suite["checks"])
        print(f"  {name:<{width}}{check.summary} [{suites}]")
        if args.verbose:
            print(f"  {'':<{width}}symptom: {check.symptom}")
            print(f"  {'':<{width}}remedy:  {check.remedy}")
    return EXIT_OK
