"""`lora-harness remote run`: the suite on one Mac Studio or a fleet, reports brought home."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.remote import deploy, detached, fleet, inventory, ring
from lora_harness.remote.connection import HostFailure
from lora_harness.remote.host_run import RemoteOptions
from lora_harness.reports import json_report, render
from lora_harness.runs.run import new_run_id

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
timeout, error).
"""


def register(commands) -> None:
    remote = commands.add_parser("remote", help="run the harness on remote hosts over SSH")
    actions = remote.add_subparsers(dest="remote_action", metavar="ACTION", required=True)
    _register_run(actions)
    _register_bench(actions)
    train = actions.add_parser(
        "train", help="start `lora-harness train` detached on the hosts (survives disconnecting)"
    )
    _connection_args(train)
    train.add_argument(
        "run_args", nargs=argparse.REMAINDER, help="-- then options for lora-harness train"
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
    add("--parallel", type=int, default=4, help="hosts at once (default 4)")
    add(
        "--distributed",
        action="store_true",
        help="one data-parallel run across the hosts, one rank each, on MLX's ring backend "
        "(started as mlx.launch starts it; rank 0 writes the report)",
    )
    add(
        "--starting-port",
        type=int,
        default=ring.DEFAULT_STARTING_PORT,
        metavar="PORT",
        help=f"--distributed: rank i listens on PORT+i (default {ring.DEFAULT_STARTING_PORT}, as mlx.launch)",
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
        help="accept unknown host keys (logged); changed keys still fail",
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
        help="environment for the remote process",
    )
    for phase, default in (("connect", 20), ("deploy", 1800), ("run", 7200), ("collect", 600)):
        add(
            f"--{phase}-timeout",
            type=float,
            default=default,
            metavar="S",
            help=f"{phase} deadline in seconds (default {default})",
        )
    parser.set_defaults(json=None)


def _infrastructure(action):
    """Map a host that cannot be reached or used to a one-line message and exit code 4."""

    def wrapped(args) -> int:
        try:
            return action(args)
        except HostFailure as failure:
            print(f"lora-harness: {failure.status}: {failure}", file=sys.stderr)
            return 4

    return wrapped


@_infrastructure
def handle_train(args) -> int:
    hosts, run_id = _hosts(args), new_run_id()
    options = _options(args, args.out.resolve())
    build = deploy.build_wheel(args.wheelhouse)
    for host in hosts:
        run_dir = detached.start(host, build, options, run_id, options.run_args)
        print(f"[{host.name}] training started in {run_dir}", file=sys.stderr)
    print(run_id)
    print(f"follow it with: lora-harness remote monitor ... {run_id}", file=sys.stderr)
    return 0


@_infrastructure
def handle_monitor(args) -> int:
    options = _options(args, args.out.resolve())
    finished = [detached.monitor(host, options, args.run_id) for host in _hosts(args)]
    return 0 if all(finished) else 1


@_infrastructure
def handle_fetch(args) -> int:
    options = _options(args, args.out.resolve())
    for host in _hosts(args):
        print(f"[{host.name}] fetched into {detached.fetch(host, options, args.run_id)}")
    return 0


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
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise InputError("two hosts share a name; give each [[hosts]] entry a unique name")
    for host in hosts:
        host.work_dir = args.work_dir or host.work_dir
    return [inventory.apply_ssh_config(h, args.ssh_config) for h in hosts]


def _options(args, out: Path) -> RemoteOptions:
    env = {}
    for item in args.remote_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--remote-env {item!r} is not KEY=VALUE")
        env[key] = value
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
    )


def handle_run(args) -> int:
    hosts = _hosts(args)
    run_id = new_run_id()
    out = (args.out / run_id).resolve()
    options = _options(args, out)
    parallel = args.parallel
    if args.distributed:
        options.ring, parallel = ring.plan(hosts, args.starting_port), len(hosts)
    build = deploy.build_wheel(args.wheelhouse)
    started = fleet.now()
    results = fleet.run_fleet(hosts, build, options, parallel, run_id)
    if options.ring:
        ring.judge_ranks(results, options.ring)
    run = {
        "id": run_id,
        "started_at": started,
        "finished_at": fleet.now(),
        "command": list(sys.argv),
    }
    summary_doc = fleet.document(results, run)
    text = json_report.dumps(summary_doc)
    path = json_report.write_atomic(out / "fleet.json", text)
    _render_fleet(results, out)
    if args.json == "-":
        sys.stdout.write(text)
    else:
        for r in results:
            print(f"  {r.status.upper():<17} {r.name:<20} {r.message}", file=sys.stderr)
        print(f"fleet summary: {path}", file=sys.stderr)
        if args.json:
            json_report.write_atomic(Path(args.json), text)
    return fleet.exit_code(summary_doc["summary"])


def _render_fleet(results, out: Path) -> None:
    """fleet.html and junit.xml from the collected JSON reports (the controller renders)."""
    reports = [json_report.load(Path(r.report)) for r in results if r.report]
    infrastructure = [
        {"name": r.name, "status": r.status}
        for r in results
        if not r.report and r.status not in ("passed", "failed")  # ranks > 0 share rank 0's
    ]
    if reports or infrastructure:
        render.write_html(out / "fleet.html", reports, infrastructure=infrastructure)
    if reports:
        render.write_junit(out / "junit.xml", reports)


def handle_bench(args) -> int:
    """The bench on every host; figures per host in fleet.json and a table in fleet.html."""
    from lora_harness.reports.bench_figures import html_table

    hosts, run_id = _hosts(args), new_run_id()
    out = (args.out / run_id).resolve()
    options = _options(args, out)
    options.subcommand = "bench"
    build = deploy.build_wheel(args.wheelhouse)
    started = fleet.now()
    results = fleet.run_fleet(hosts, build, options, args.parallel, run_id)
    run = {"id": run_id, "started_at": started, "finished_at": fleet.now(), "command": sys.argv}
    document = {**fleet.document(results, run), "bench": True}
    text = json_report.dumps(document)
    path = json_report.write_atomic(out / "fleet.json", text)
    json_report.write_atomic(out / "fleet.html", html_table(document["hosts"]))
    if args.json == "-":
        sys.stdout.write(text)
    else:
        for r in results:
            print(f"  {r.status.upper():<17} {r.name:<20} {r.message}", file=sys.stderr)
        print(f"fleet bench: {path}", file=sys.stderr)
        if args.json:
            json_report.write_atomic(Path(args.json), text)
    return fleet.exit_code(document["summary"])
