"""`lora-harness remote run`: the suite on one Mac Studio or a fleet, reports brought home."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lora_harness.core.errors import EXIT_HOST_FAILED, EXIT_OK, InputError
from lora_harness.core.files import write_atomic
from lora_harness.core.validation import Rule
from lora_harness.remote import collect, deploy, detached, fleet, inventory, names, ring
from lora_harness.remote.connection import HostFailure
from lora_harness.remote.host_run import DEFAULT_DEADLINES_S, RemoteOptions
from lora_harness.remote.redact import Redactor
from lora_harness.reports import json_report, render
from lora_harness.runs import options as run_options
from lora_harness.runs.run import new_run_id
from lora_harness.runs.validate import argtype

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
        type=float,
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
        type=argtype(Rule(int, minimum=1)),
        default=4,
        help="hosts at once (default 4)",
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
    bench.add_argument("--parallel", type=int, default=1, help="hosts at once (default 1)")
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
    plan.add_argument("--parallel", type=int, default=4, help="hosts at once (default 4)")
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
    add("--hosts", type=Path, metavar="FLEET.toml", help="fleet inventory (format in the README)")
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
            print(f"lora-harness: {failure.status}: {failure}", file=sys.stderr)
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


@_infrastructure
def handle_train(args) -> int:
    run_options.check_forwarded(args.run_args, "train")
    hosts, run_id = _hosts(args), new_run_id()
    options = _options(args, args.out.resolve(), hosts)
    with deploy.build_wheel(args.wheelhouse) as build:
        for host in hosts:
            run_dir = detached.start(
                host, build, options, run_id, options.run_args, grace_s=args.start_grace
            )
            print(f"[{host.name}] training started in {run_dir}", file=sys.stderr)
    print(run_id)
    print(f"follow it with: lora-harness remote monitor ... {run_id}", file=sys.stderr)
    return EXIT_OK


@_infrastructure
def handle_monitor(args) -> int:
    names.check_run_id(args.run_id)
    hosts = _hosts(args)
    options = _options(args, args.out.resolve(), hosts)
    states = [detached.monitor(host, options, args.run_id) for host in hosts]
    return max(state.code() for state in states)


@_infrastructure
def handle_fetch(args) -> int:
    names.check_run_id(args.run_id)
    hosts = _hosts(args)
    options = _options(args, args.out.resolve(), hosts)
    codes = []
    for host in hosts:
        target, state, got = detached.fetch(host, options, args.run_id)
        note = f" ({got['skipped_count']} item(s) skipped)" if got["skipped_count"] else ""
        print(f"[{host.name}] fetched into {target}; {state.describe()}{note}")
        for skipped in got["skipped"]:
            print(f"[{host.name}]   skipped {skipped}", file=sys.stderr)
        if got["incomplete"]:
            print(f"[{host.name}]   collect incomplete: {got['incomplete']}", file=sys.stderr)
        state.report(host)
        codes.append(state.code() or (EXIT_HOST_FAILED if got["incomplete"] else EXIT_OK))
    return max(codes)


def _hosts(args) -> list[inventory.Host]:
    hosts = [inventory.parse_host(spec) for spec in args.host]
    if args.hosts:
        hosts += inventory.load_fleet(args.hosts)
    if args.retry_failed:
        hosts += fleet.hosts_to_retry(args.retry_failed, getattr(args, "distributed", False))
    if not hosts:
        raise InputError(
            "no hosts: pass --host user@host, --hosts fleet.toml or --retry-failed SUMMARY.json"
        )
    labels = [h.name for h in hosts]
    if len(set(labels)) != len(labels):
        raise InputError("two hosts share a name; give each [[hosts]] entry a unique name")
    unknown = set(args.trust_new_host) - set(labels)
    if unknown:
        raise InputError(f"--trust-new-host {sorted(unknown)[0]!r} names no host of this run")
    for host in hosts:
        host.work_dir = args.work_dir or host.work_dir
        host.trust_new = host.trust_new or host.name in args.trust_new_host
    return [inventory.apply_ssh_config(h, args.ssh_config) for h in hosts]


def _remote_env(args) -> dict:
    env = {}
    for item in args.remote_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError("--remote-env takes KEY=VALUE (the value is not shown here)")
        env[names.check_env_key(key, "--remote-env")] = value
    for key in args.remote_env_from:
        names.check_env_key(key, "--remote-env-from")
        if key not in os.environ:
            raise InputError(f"--remote-env-from {key}: {key} is not set in this environment")
        env[key] = os.environ[key]
    return env


def _options(args, out: Path, hosts=()) -> RemoteOptions:
    env = _remote_env(args)
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    return RemoteOptions(
        run_args=run_args,
        out=out,
        known_hosts=[os.path.expanduser("~/.ssh/known_hosts"), *args.known_hosts],
        trust_new=args.trust_new_hosts,
        remote_python=args.remote_python,
        system_site_packages=args.system_site_packages,
        remote_env=env,
        timeouts={
            p: getattr(args, f"{p}_timeout") for p in ("connect", "deploy", "run", "collect")
        },
        echo=args.json != "-",
        collect_caps={
            "max_run_bytes": args.collect_max_bytes,
            "max_file_bytes": args.collect_max_file_bytes,
        },
        redactor=Redactor(env),
        remember_keys=(args.known_hosts or [os.path.expanduser("~/.ssh/known_hosts")])[-1],
        folders=names.folder_names([h.name for h in hosts]),
    )


def handle_run(args) -> int:
    run_options.check_forwarded(args.run_args, "run")
    hosts = _hosts(args)
    run_id = new_run_id()
    out = (args.out / run_id).resolve()
    options = _options(args, out, hosts)
    parallel = args.parallel
    if args.distributed:
        options.ring, parallel = ring.plan(hosts, args.starting_port), len(hosts)
    started = fleet.now()
    with deploy.build_wheel(args.wheelhouse) as build:
        build.packages = [deploy.build_local_package(p) for p in args.with_local_package]
        results = fleet.run_fleet(hosts, build, options, parallel, run_id)
    if options.ring:
        ring.judge_ranks(results, options.ring)
    run = {
        "id": run_id,
        "started_at": started,
        "finished_at": fleet.now(),
        "command": options.redactor.argv(list(sys.argv)),
    }
    _render_fleet(results, out)  # first: a host whose report cannot render ends `error`
    return _write_summary(fleet.document(results, run), results, out, args, "fleet summary")


def _write_summary(document: dict, results, out: Path, args, label: str) -> int:
    """fleet.json (and --json PATH|-), one line per host, and the fleet's exit code."""
    text = json_report.dumps(document)
    path = write_atomic(out / "fleet.json", text)
    if args.json == "-":
        sys.stdout.write(text)
    else:
        for r in results:
            print(f"  {r.status.upper():<17} {r.name:<20} {r.message}", file=sys.stderr)
        print(f"{label}: {path}", file=sys.stderr)
        if args.json:
            write_atomic(Path(args.json), text)
    return fleet.exit_code(document["summary"])


def _render_fleet(results, out: Path) -> None:
    """fleet.html and junit.xml from the collected JSON reports (the controller renders).

    A report that cannot be read or rendered is its host's `error`; the fleet still renders.
    """
    reports = {}
    for r in results:
        if r.report and r.status in ("passed", "failed"):
            try:
                document = json_report.load(Path(r.report))
                render.html.render([document], [None], None)
                render.junit.render([document])
                reports[r.name] = document
            except Exception as error:
                r.status = "error"
                r.message = f"its report cannot be rendered: {error.__class__.__name__}: {error}"
    infrastructure = [
        {"name": r.name, "status": r.status}
        for r in results
        if r.name not in reports and r.status not in ("passed", "failed")
    ]
    if reports or infrastructure:
        render.write_html(out / "fleet.html", list(reports.values()), infrastructure=infrastructure)
    if reports:
        render.write_junit(out / "junit.xml", list(reports.values()))


def handle_bench(args) -> int:
    """The bench on every host; figures per host in fleet.json and a table in fleet.html."""
    from lora_harness.reports.bench_figures import html_table

    hosts, run_id = _hosts(args), new_run_id()
    out = (args.out / run_id).resolve()
    options = _options(args, out, hosts)
    options.subcommand = "bench"
    started = fleet.now()
    with deploy.build_wheel(args.wheelhouse) as build:
        results = fleet.run_fleet(hosts, build, options, args.parallel, run_id)
    command = options.redactor.argv(list(sys.argv))
    run = {"id": run_id, "started_at": started, "finished_at": fleet.now(), "command": command}
    document = {**fleet.document(results, run), "bench": True}
    write_atomic(out / "fleet.html", html_table(document["hosts"]))
    return _write_summary(document, results, out, args, "fleet bench")


def handle_plan(args) -> int:
    """The plan on every host, against each host's own memory; one row per host."""
    from lora_harness.reports.plan_table import html_table

    run_options.check_forwarded(args.run_args, "plan")
    hosts, run_id = _hosts(args), new_run_id()
    out = (args.out / run_id).resolve()
    options = _options(args, out, hosts)
    options.subcommand = "plan"
    started = fleet.now()
    with deploy.build_wheel(args.wheelhouse) as build:
        results = fleet.run_fleet(hosts, build, options, args.parallel, run_id)
    command = options.redactor.argv(list(sys.argv))
    run = {"id": run_id, "started_at": started, "finished_at": fleet.now(), "command": command}
    document = {**fleet.document(results, run), "plan": True}
    write_atomic(out / "fleet.html", html_table(document["hosts"]))
    return _write_summary(document, results, out, args, "fleet plan")
