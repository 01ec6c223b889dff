"""Which hosts to run on: `--host user@host[:port]` or a fleet TOML, completed by ~/.ssh/config.

fleet.toml:

    [defaults]                      # optional, applies to every host
    python = "/opt/homebrew/bin/python3"
    work_dir = "~/.lora-harness"

    [[hosts]]
    name = "studio-1"               # label used in reports (default: hostname)
    hostname = "studio-1.local"
    user = "ml"                     # default: ~/.ssh/config User, else the local user
    port = 22
    identity_file = "~/.ssh/id_ed25519"
    python = "/usr/bin/python3"     # interpreter the remote venv is made from
    work_dir = "~/.lora-harness"    # wheels, venvs and runs live here
    labels = ["m2-ultra", "192gb"]
    ips = ["10.0.0.1"]              # --distributed: its address on the ranks' network
"""

from __future__ import annotations

import getpass
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.validation import Rule, check, check_keys, read_text
from lora_harness.remote import names

DEFAULT_WORK_DIR = "~/.lora-harness"


@dataclass
class Host:
    name: str
    hostname: str
    user: str | None = None
    port: int = 22
    identity_files: list[str] = field(default_factory=list)
    python: str = "python3"
    work_dir: str = DEFAULT_WORK_DIR
    labels: list[str] = field(default_factory=list)
    proxy_command: str | None = None
    ips: list[str] = field(default_factory=list)
    trust_new: bool = False  # accept (and remember) this host's key when it is unknown

    def describe(self) -> dict:
        return {
            "name": self.name,
            "hostname": self.hostname,
            "user": self.user,
            "port": self.port,
            "python": self.python,
            "work_dir": self.work_dir,
            "labels": self.labels,
            "ips": self.ips,
            "trust_new": self.trust_new,
        }

    def check(self, where: str) -> Host:
        """Refuse a hostname, user or port that is not plain data (before any argv sees it)."""
        names.check_hostname(self.hostname, where)
        names.check_user(self.user, where)
        self.port = names.check_port(self.port, where)
        self.trust_new = self.trust_new is True
        return self


PORT = Rule(int, minimum=1, maximum=65535, hint="an SSH port such as 22")
HOST_RULES = {
    "name": Rule(str),
    "hostname": Rule(str),
    "user": Rule(str),
    "port": PORT,
    "identity_file": Rule(str, hint="one key file path, e.g. ~/.ssh/id_ed25519"),
    "python": Rule(str),
    "work_dir": Rule(str),
    "labels": Rule(list, items=str, hint='e.g. labels = ["m2-ultra"]'),
    "ips": Rule(list, items=str, hint='e.g. ips = ["10.0.0.1"]'),
    "trust_new": Rule(bool, hint="trust_new = true trusts this host's key on first contact"),
}
DEFAULT_KEYS = [k for k in HOST_RULES if k not in ("name", "hostname")]


def parse_host(spec: str) -> Host:
    """`user@host[:port]` (user and port optional)."""
    user, _, rest = spec.rpartition("@")
    hostname, _, port = rest.partition(":")
    if not hostname or (user == "" and "@" in spec):
        raise InputError(f"--host {spec!r}: expected user@host[:port]")
    where = f"--host {spec!r}"
    number = names.check_port(port, where) if port else 22
    return Host(name=hostname, hostname=hostname, user=user or None, port=number).check(where)


def load_fleet(path: Path) -> list[Host]:
    """The hosts of a fleet TOML; unknown keys, wrong types and bad ports are errors."""
    document = _read_toml(path)
    check_keys(document, ["defaults", "hosts"], f"--hosts {path}")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InputError(f"--hosts {path}: defaults must be a [defaults] table")
    entries = document.get("hosts") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"--hosts {path}: hosts must be [[hosts]] tables")
    if not entries:
        raise InputError(f"--hosts {path} lists no [[hosts]]; add one per machine")
    check_keys(defaults, DEFAULT_KEYS, f"--hosts {path} [defaults]")
    hosts = []
    for number, entry in enumerate(entries, start=1):
        where = f"--hosts {path} [[hosts]] #{number}"
        check_keys(entry, HOST_RULES, where)
        merged = {**defaults, **entry}
        if "hostname" not in merged:
            raise InputError(f"{where} needs a hostname")
        for key, value in merged.items():
            check(f"{where}: {key}", value, HOST_RULES[key])
        hosts.append(host_from(merged, where))
    host_names = [h.name for h in hosts]
    if duplicate := next((n for n in host_names if host_names.count(n) > 1), None):
        raise InputError(f"--hosts {path}: two hosts are named {duplicate!r}; give each a name")
    return hosts


def _read_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    text = read_text(path, "--hosts", "write a fleet TOML (see lora-harness remote run --help)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"--hosts {path} is not valid TOML: {exc}")


def host_from(merged: dict, where: str) -> Host:
    return Host(
        name=str(merged.get("name", merged["hostname"])),
        hostname=names.check_hostname(merged["hostname"], where),
        user=names.check_user(merged.get("user"), where),
        port=names.check_port(merged.get("port", 22), where),
        identity_files=[merged["identity_file"]] if merged.get("identity_file") else [],
        python=merged.get("python", "python3"),
        work_dir=merged.get("work_dir", DEFAULT_WORK_DIR),
        labels=list(merged.get("labels", [])),
        ips=[str(ip) for ip in merged.get("ips", [])],
        trust_new=merged.get("trust_new") is True,
    )


def apply_ssh_config(host: Host, config_path: Path | None = None) -> Host:
    """Fill what the inventory left open from ~/.ssh/config (paramiko parses it, never applies it)."""
    import paramiko

    # Checked before the lookup too: paramiko expands %h in ProxyCommand with this value.
    host.check(f"host {host.name!r}")
    path = Path(config_path or os.path.expanduser("~/.ssh/config"))
    if path.exists():
        entry = paramiko.SSHConfig.from_path(str(path)).lookup(host.hostname)
        host.hostname = entry.get("hostname", host.hostname)
        host.user = host.user or entry.get("user")
        if host.port == 22 and "port" in entry:
            host.port = entry["port"]
        host.identity_files = host.identity_files or list(entry.get("identityfile", []))
        host.proxy_command = entry.get("proxycommand")
        if not host.proxy_command and entry.get("proxyjump"):
            host.proxy_command = f"ssh -W %h:%p {shlex.quote(entry['proxyjump'])}"
    host.user = host.user or getpass.getuser()
    host.identity_files = [os.path.expanduser(f) for f in host.identity_files]
    return host.check(f"host {host.name!r} (after {path})")


def expand_home(work_dir: str, home: str) -> str:
    """`~` or `~/...` at the start means the remote user's home; a `~` elsewhere is a name."""
    if work_dir == "~" or work_dir.startswith("~/"):
        return home + work_dir[1:]
    return work_dir
