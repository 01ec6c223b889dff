"""`lora-harness list`: the checks and suites with their one-line summaries."""

from __future__ import annotations

from lora_harness.runs.suites import DEFAULT_SUITE, SUITES, all_checks


def register(commands) -> None:
    parser = commands.add_parser("list", help="list checks and suites")
    parser.add_argument("--verbose", "-v", action="store_true", help="also show symptom and remedy")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    checks = all_checks()
    print("Suites:")
    for name, suite in SUITES.items():
        default = " (default)" if name == DEFAULT_SUITE else ""
        print(f"  {name:<12}{suite['summary']}{default}; {len(suite['checks'])} checks")
    print("\nChecks:")
    width = max(len(name) for name in checks) + 2
    for name in sorted(checks):
        check = checks[name]
        suites = ",".join(s for s, suite in SUITES.items() if name in suite["checks"])
        print(f"  {name:<{width}}{check.summary} [{suites}]")
        if args.verbose:
            print(f"  {'':<{width}}symptom: {check.symptom}")
            print(f"  {'':<{width}}remedy:  {check.remedy}")
    return 0
