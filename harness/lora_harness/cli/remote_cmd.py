"""`lora-harness remote run`: the suite on one Mac Studio or a fleet, reports brought home."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lora_harness.core.declared import describe
from lora_harness.core.errors import EXIT_HOST_FAILED, EXIT_OK
from lora_harness.core.files import write_atomic
from lora_harness.core.terminal import printable
from lora_harness.core.validation import Rule
from lora_harness.remote import collect, controller, detached, ring
from lora_harness.remote.connection import HostFailure
from lora_harness.remote.host_run import DEFAULT_DEADLINES_S
from lora_harness.reports import json_report
from lora_harness.runs import validate
from lora_harness.runs.validate import argtype

PARALLEL = Rule(int, minimum=1)  # --parallel of run, bench and plan: one rule

EPILOG = """\
examples:
  lora-harness remote run --host ml@studio-1.local -- --model ~/models/Qwen2.5-7B-mlx
  lora-harness remote run --hosts fleet.toml --parallel 8 --json fleet.json -- --suite gate
  lora-harness remote run --retry-failed lora-harness-remote/<run-id>/fleet.json
  lora-harness remote run --distributed --hosts two-studios.toml -- --model ~/models/Qwen2.5-7B-mlx

Everything after -- is passed to `lora-harness run` on each host. Host keys are checked
against ~/.ssh/known_hosts (and --known-hosts); unknown hosts are refused unless
--trust-new-hosts (recorded in the summary). Exit: 0 all passed, 1 a host failed its
checks, 4 hosts could not be reached or run (unreachable, auth_failed, hostkey_rejected,
timeout, interrupted, error).
"""


def register(commands) -> None:
    remote = commands.add_parser("remote", help="run the harness on remote hosts over SSH")
    actions = remote.add_subparsers(dest="remote_action", metavar="ACTION", required=True)
    _register_run(actions)
    _register_bench(actions)
    _register_plan(actions)
    train = actions.add_parser(
        "train", help="start `lora-harness train` detached on the hosts (survives disconnecting)"
    )
    _connection_args(train)
    train.add_argument(
        "run_args", nargs=argparse.REMAINDER, help="-- then options for lora-harness train"
    )
    train.add_argument(
        "--start-grace",
        type=argtype(Rule(float, minimum=0)),
        default=detached.START_GRACE_S,
        metavar="S",
        help="wait up to S seconds for the training to write its first step; a process "
        f"that dies meanwhile fails the start with its log (default {detached.START_GRACE_S:g})",
    )
    train.set_defaults(handler=handle_train, retry_failed=None)
    for name, handler, what in (
        ("monitor", handle_monitor, "follow a detached training run's progress live"),
        ("fetch", handle_fetch, "bring a detached training run's folder home"),
    ):
        action = actions.add_parser(name, help=what)
        _connection_args(action)
        action.add_argument("run_id", help="the run id printed by remote train")
        action.set_defaults(handler=handler, retry_failed=None, run_args=[])


def _register_run(actions) -> None:
    run = actions.add_parser(
        "run",
        help="deploy, run and collect on one host or a fleet",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_args(run)
    add = run.add_argument
    add(
        "--retry-failed",
        type=Path,
        metavar="SUMMARY.json",
        help="rerun only hosts that did not pass",
    )
    add(
        "--parallel",
        type=argtype(PARALLEL),
        default=4,
        help=describe("hosts at once", PARALLEL, 4),
    )
    add(
        "--distributed",
        action="store_true",
        help="one data-parallel run across the hosts, one rank each, on MLX's ring backend "
        "(started as mlx.launch starts it; rank 0 writes the report)",
    )
    add(
        "--starting-port",
        type=argtype(Rule(int, minimum=1, maximum=65535)),
        default=ring.DEFAULT_STARTING_PORT,
        metavar="PORT",
        help=f"--distributed: rank i listens on PORT+i (default {ring.DEFAULT_STARTING_PORT}, as mlx.launch)",
    )
    add(
        "--with-local-package",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="also build the project at PATH as a wheel and install it on each host, e.g. the "
        "backend that -- --recipe mypkg.mod:RECIPE names (repeatable)",
    )
    add("--json", metavar="PATH", help="also write the fleet summary to PATH, or - for stdout only")
    add("run_args", nargs=argparse.REMAINDER, help="-- then options for lora-harness run")
    run.set_defaults(handler=handle_run)


def _register_bench(actions) -> None:
    bench = actions.add_parser(
        "bench",
        help="run `lora-harness bench` on every host and bring each host's figures home",
        epilog=(
            "example:\n  lora-harness remote bench --hosts fleet.toml -- "
            "--model random:qwen2.5-7b --only check_overhead\n\n"
            "Everything after -- is passed to `lora-harness bench` on each host. fleet.json "
            "holds hosts[i].bench; fleet.html a per-host table; `lora-harness compare` of two "
            "fleet.json files flags per-host regressions."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_args(bench)
    bench.add_argument(
        "--parallel",
        type=argtype(PARALLEL),
        default=1,
        help=describe("hosts at once", PARALLEL, 1),
    )
    bench.add_argument("--json", metavar="PATH", help="also write fleet.json to PATH, or -")
    bench.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then options for bench")
    bench.set_defaults(handler=handle_bench, retry_failed=None)


def _register_plan(actions) -> None:
    plan = actions.add_parser(
        "plan",
        help="run `lora-harness plan` on every host: one row per host, fits or not, and the fix",
        epilog=(
            "example:\n  lora-harness remote plan --hosts fleet.toml -- "
            "--model ~/models/Qwen2.5-7B-mlx --batch-size 4 --max-seq-length 2048\n\n"
            "Everything after -- is passed to `lora-harness plan` on each host, which predicts "
            "against that host's own memory. fleet.json holds hosts[i].plan; fleet.html a "
            "per-host table. A host where the run does not fit is `failed`, with the cheapest "
            "change that fits."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _connection_args(plan)
    plan.add_argument(
        "--parallel",
        type=argtype(PARALLEL),
        default=4,
        help=describe("hosts at once", PARALLEL, 4),
    )
    plan.add_argument("--json", metavar="PATH", help="also write fleet.json to PATH, or -")
    plan.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then options for plan")
    plan.set_defaults(handler=handle_plan, retry_failed=None)


def _connection_args(parser) -> None:
    """Host selection, SSH and deploy options shared by every remote action."""
    add = parser.add_argument
    add(
        "--host",
        action="append",
        default=[],
        metavar="USER@HOST[:PORT]",
        help="a host (repeatable)",
    )
    add(
        "--hosts",
        type=Path,
        metavar="FLEET.toml",
        help="fleet inventory (format in docs/remote.md)",
    )
    add(
        "--out",
        type=Path,
        default=Path("lora-harness-remote"),
        help="local results folder (default ./lora-harness-remote)",
    )
    add("--known-hosts", action="append", default=[], metavar="FILE", help="extra known_hosts file")
    add(
        "--trust-new-hosts",
        action="store_true",
        help="accept unknown host keys of every host (logged, and added to the last "
        "--known-hosts file, else ~/.ssh/known_hosts); changed and @revoked keys still fail",
    )
    add(
        "--trust-new-host",
        action="append",
        default=[],
        metavar="NAME",
        help="as --trust-new-hosts, for this inventory host only (repeatable; or "
        "trust_new = true in its [[hosts]] entry)",
    )
    add("--ssh-config", type=Path, help="ssh config file (default ~/.ssh/config)")
    add(
        "--remote-python",
        help="interpreter the host's venv is made from (default: inventory or python3)",
    )
    add(
        "--system-site-packages",
        action="store_true",
        help="let the venv see packages the host already has",
    )
    add(
        "--work-dir",
        help="folder on the hosts for wheels, venvs and runs (default ~/.lora-harness)",
    )
    add(
        "--wheelhouse",
        type=Path,
        help="folder of wheels to upload and install from (offline hosts)",
    )
    add(
        "--remote-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for the remote process (the value is masked as *** in every "
        "local summary, report and log)",
    )
    add(
        "--remote-env-from",
        action="append",
        default=[],
        metavar="NAME",
        help="pass the local environment variable NAME to the remote process, so a secret "
        "(HF_TOKEN) never sits on a command line; masked like --remote-env",
    )
    add(
        "--collect-max-bytes",
        type=_size,
        default=collect.DEFAULT_MAX_RUN_BYTES,
        metavar="SIZE",
        help="stop collecting a host's files after SIZE bytes (K/M/G suffixes; default 16G)",
    )
    add(
        "--collect-max-file-bytes",
        type=_size,
        default=collect.DEFAULT_MAX_FILE_BYTES,
        metavar="SIZE",
        help="skip a collected file larger than SIZE (default 4G)",
    )
    for phase, default in DEFAULT_DEADLINES_S.items():
        add(
            f"--{phase}-timeout",
            type=argtype(Rule(float, above=0)),
            default=default,
            metavar="S",
            help=f"{phase} deadline in seconds (default {default})",
        )
    parser.set_defaults(json=None)


def _infrastructure(action):
    """Map a host that cannot be reached or used to a one-line message and EXIT_HOST_FAILED."""

    def wrapped(args) -> int:
        try:
            return action(args)
        except HostFailure as failure:
            print(f"lora-harness: {failure.status}: {printable(failure)}", file=sys.stderr)
            return getattr(failure, "exit_code", EXIT_HOST_FAILED)

    return wrapped


def _size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    text = text.strip().upper().removesuffix("B")
    try:
        number = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (bytes, or 512M, 4G)")
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive")
    return int(number)


def _request(args) -> controller.Request:
    """The parsed command line as the controller's request (actions lack some options)."""
    return controller.Request(
        run_args=args.run_args,
        out=args.out,
        command=list(sys.argv),
        host_specs=args.host,
        fleet_file=args.hosts,
        retry_failed=args.retry_failed,
        distributed=getattr(args, "distributed", False),
        starting_port=getattr(args, "starting_port", ring.DEFAULT_STARTING_PORT),
        parallel=getattr(args, "parallel", 1),
        work_dir=args.work_dir,
        trust_new_host=args.trust_new_host,
        trust_new_hosts=args.trust_new_hosts,
        ssh_config=args.ssh_config,
        known_hosts=args.known_hosts,
        remote_python=args.remote_python,
        system_site_packages=args.system_site_packages,
        remote_env=args.remote_env,
        remote_env_from=args.remote_env_from,
        timeouts={p: getattr(args, f"{p}_timeout") for p in DEFAULT_DEADLINES_S},
        collect_caps={
            "max_run_bytes": args.collect_max_bytes,
            "max_file_bytes": args.collect_max_file_bytes,
        },
        wheelhouse=args.wheelhouse,
        local_packages=getattr(args, "with_local_package", []),
        echo=args.json != "-",
    )


@_infrastructure
def handle_train(args) -> int:
    validate.check_forwarded(args.run_args, "train")

    def started(host, run_dir):
        print(f"[{printable(host.name)}] training started in {printable(run_dir)}", file=sys.stderr)

    run_id = controller.start_training(_request(args), args.start_grace, started)
    print(run_id)
    print(f"follow it with: lora-harness remote monitor ... {run_id}", file=sys.stderr)
    return EXIT_OK


@_infrastructure
def handle_monitor(args) -> int:
    return controller.monitor(_request(args), args.run_id)


@_infrastructure
def handle_fetch(args) -> int:
    codes = []
    for host, target, state, got in controller.fetch(_request(args), args.run_id):
        note = f" ({got['skipped_count']} item(s) skipped)" if got["skipped_count"] else ""
        name = printable(host.name)
        print(f"[{name}] fetched into {printable(target)}; {state.describe()}{note}")
        for skipped in got["skipped"]:
            print(f"[{name}]   skipped {printable(skipped)}", file=sys.stderr)
        if got["incomplete"]:
            print(
                f"[{name}]   collect incomplete: {printable(got['incomplete'])}",
                file=sys.stderr,
            )
        state.report(host)
        codes.append(state.code() or (EXIT_HOST_FAILED if got["incomplete"] else EXIT_OK))
    return max(codes)


def handle_run(args) -> int:
    validate.check_forwarded(args.run_args, "run")
    return _print_summary(controller.run(_request(args)), args, "fleet summary")


def handle_bench(args) -> int:
    """The bench on every host; figures per host in fleet.json and a table in fleet.html."""
    validate.check_forwarded(args.run_args, "bench")
    return _print_summary(controller.bench(_request(args)), args, "fleet bench")


def _print_summary(outcome: controller.Outcome, args, label: str) -> int:
    """The summary on stdout (--json -), or one line per host; --json PATH; the exit code."""
    text = json_report.dumps(outcome.document)
    if args.json == "-":
        sys.stdout.write(text)
    else:
        for r in outcome.results:
            print(
                f"  {r.status.upper():<17} {printable(r.name):<20} {printable(r.message)}",
                file=sys.stderr,
            )
        print(f"{label}: {printable(outcome.path)}", file=sys.stderr)
        if args.json:
            write_atomic(Path(args.json), text)
    return outcome.exit_code()


def handle_plan(args) -> int:
    """The plan on every host, against each host's own memory; one row per host."""
    validate.check_forwarded(args.run_args, "plan")
    return _print_summary(controller.plan(_request(args)), args, "fleet plan")
