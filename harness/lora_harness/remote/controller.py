"""What the controller does for one `lora-harness remote ...` command.

Select the hosts, build the options every host shares, then deploy -> run -> collect on the
fleet and render fleet.html / junit.xml / fleet.json from the collected JSON reports. The
CLI parses into a `Request`, calls one function here and prints what it returns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.files import write_atomic
from lora_harness.remote import deploy, detached, fleet, inventory, names, ring
from lora_harness.remote.host_run import DEFAULT_DEADLINES_S, HostResult, RemoteOptions
from lora_harness.remote.redact import Redactor
from lora_harness.reports import json_report, render
from lora_harness.runs.run import new_run_id


@dataclass
class Request:
    """One remote command's inputs: which hosts, how to reach them, what to run there."""

    run_args: list[str]
    out: Path
    command: list[str]  # the controller's own argv, stored with secrets masked
    host_specs: list[str] = field(default_factory=list)
    fleet_file: Path | None = None
    retry_failed: Path | None = None
    distributed: bool = False
    starting_port: int = ring.DEFAULT_STARTING_PORT
    parallel: int = 4
    work_dir: str | None = None
    trust_new_host: list[str] = field(default_factory=list)
    trust_new_hosts: bool = False
    ssh_config: Path | None = None
    known_hosts: list[str] = field(default_factory=list)
    remote_python: str | None = None
    system_site_packages: bool = False
    remote_env: list[str] = field(default_factory=list)  # KEY=VALUE
    remote_env_from: list[str] = field(default_factory=list)  # local variable names
    timeouts: dict = field(default_factory=lambda: dict(DEFAULT_DEADLINES_S))
    collect_caps: dict = field(default_factory=dict)
    wheelhouse: Path | None = None
    local_packages: list[Path] = field(default_factory=list)
    echo: bool = True  # stream hosts' progress lines (off when the summary goes to stdout)


@dataclass
class Outcome:
    """A fleet run: the summary document, each host's result and where it was written."""

    document: dict
    results: list[HostResult]
    path: Path  # OUT/<run-id>/fleet.json

    def exit_code(self) -> int:
        return fleet.exit_code(self.document["summary"])


def select_hosts(request: Request) -> list[inventory.Host]:
    """--host, --hosts and --retry-failed together; names unique, ssh config applied."""
    hosts = [inventory.parse_host(spec) for spec in request.host_specs]
    if request.fleet_file:
        hosts += inventory.load_fleet(request.fleet_file)
    if request.retry_failed:
        hosts += fleet.hosts_to_retry(request.retry_failed, request.distributed)
    if not hosts:
        raise InputError(
            "no hosts: pass --host user@host, --hosts fleet.toml or --retry-failed SUMMARY.json"
        )
    labels = [h.name for h in hosts]
    if len(set(labels)) != len(labels):
        raise InputError("two hosts share a name; give each [[hosts]] entry a unique name")
    unknown = set(request.trust_new_host) - set(labels)
    if unknown:
        raise InputError(f"--trust-new-host {sorted(unknown)[0]!r} names no host of this run")
    for host in hosts:
        host.work_dir = request.work_dir or host.work_dir
        host.trust_new = host.trust_new or host.name in request.trust_new_host
    return [inventory.apply_ssh_config(h, request.ssh_config) for h in hosts]


def remote_env(request: Request) -> dict:
    """--remote-env KEY=VALUE and --remote-env-from NAME, keys checked, values kept secret."""
    env = {}
    for item in request.remote_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError("--remote-env takes KEY=VALUE (the value is not shown here)")
        env[names.check_env_key(key, "--remote-env")] = value
    for key in request.remote_env_from:
        names.check_env_key(key, "--remote-env-from")
        if key not in os.environ:
            raise InputError(f"--remote-env-from {key}: {key} is not set in this environment")
        env[key] = os.environ[key]
    return env


def options(request: Request, out: Path, hosts=()) -> RemoteOptions:
    env = remote_env(request)
    run_args = request.run_args[1:] if request.run_args[:1] == ["--"] else request.run_args
    default_known = os.path.expanduser("~/.ssh/known_hosts")
    return RemoteOptions(
        run_args=run_args,
        out=out,
        known_hosts=[default_known, *request.known_hosts],
        trust_new=request.trust_new_hosts,
        remote_python=request.remote_python,
        system_site_packages=request.system_site_packages,
        remote_env=env,
        timeouts=dict(request.timeouts),
        echo=request.echo,
        collect_caps=dict(request.collect_caps),
        redactor=Redactor(env),
        remember_keys=(request.known_hosts or [default_known])[-1],
        folders=names.folder_names([h.name for h in hosts]),
    )


def run(request: Request) -> Outcome:
    """`remote run`: the suite on every host (or one rank per host), reports brought home."""
    hosts = select_hosts(request)
    run_id = new_run_id()
    out = (request.out / run_id).resolve()
    shared = options(request, out, hosts)
    parallel = request.parallel
    if request.distributed:
        shared.ring, parallel = ring.plan(hosts, request.starting_port), len(hosts)
    started = fleet.now()
    with deploy.build_wheel(request.wheelhouse) as build:
        build.packages = [deploy.build_local_package(p) for p in request.local_packages]
        results = fleet.run_fleet(hosts, build, shared, parallel, run_id)
    if shared.ring:
        ring.judge_ranks(results, shared.ring)
    render_fleet(results, out)  # first: a host whose report cannot render ends `error`
    document = fleet.document(results, _run_info(run_id, started, shared, request))
    return Outcome(document, results, write_atomic(out / "fleet.json", json_report.dumps(document)))


def bench(request: Request) -> Outcome:
    """`remote bench`: the bench on every host; figures per host in fleet.json and fleet.html."""
    from lora_harness.reports.bench_figures import html_table

    return per_host(request, "bench", html_table)


def plan(request: Request) -> Outcome:
    """`remote plan`: the fit plan on every host, against each host's own memory."""
    from lora_harness.reports.plan_table import html_table

    return per_host(request, "plan", html_table)


def per_host(request: Request, subcommand: str, html_table) -> Outcome:
    """`lora-harness SUBCOMMAND` on every host; fleet.json marks it, html_table draws fleet.html."""
    hosts, run_id = select_hosts(request), new_run_id()
    out = (request.out / run_id).resolve()
    shared = options(request, out, hosts)
    shared.subcommand = subcommand
    started = fleet.now()
    with deploy.build_wheel(request.wheelhouse) as build:
        results = fleet.run_fleet(hosts, build, shared, request.parallel, run_id)
    run_info = _run_info(run_id, started, shared, request)
    document = {**fleet.document(results, run_info), subcommand: True}
    write_atomic(out / "fleet.html", html_table(document["hosts"]))
    return Outcome(document, results, write_atomic(out / "fleet.json", json_report.dumps(document)))


def _run_info(run_id: str, started: str, shared: RemoteOptions, request: Request) -> dict:
    return {
        "id": run_id,
        "started_at": started,
        "finished_at": fleet.now(),
        "command": shared.redactor.argv(list(request.command)),
    }


def render_fleet(results: list[HostResult], out: Path) -> None:
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


def start_training(request: Request, grace_s: float, on_started) -> str:
    """`remote train`: training started detached on every host; returns the run id."""
    hosts, run_id = select_hosts(request), new_run_id()
    shared = options(request, request.out.resolve(), hosts)
    with deploy.build_wheel(request.wheelhouse) as build:
        for host in hosts:
            run_dir = detached.start(host, build, shared, run_id, shared.run_args, grace_s=grace_s)
            on_started(host, run_dir)
    return run_id


def monitor(request: Request, run_id: str) -> int:
    """`remote monitor`: follow each host's detached run; the worst host's exit code."""
    names.check_run_id(run_id)
    hosts = select_hosts(request)
    shared = options(request, request.out.resolve(), hosts)
    return max(detached.monitor(host, shared, run_id).code() for host in hosts)


def fetch(request: Request, run_id: str):
    """`remote fetch`: yields (host, local folder, state, what collect got) per host."""
    names.check_run_id(run_id)
    hosts = select_hosts(request)
    shared = options(request, request.out.resolve(), hosts)
    for host in hosts:
        target, state, got = detached.fetch(host, shared, run_id)
        yield host, target, state, got
