"""Connect with verified host keys; classify every way a connection can fail.

Host keys are checked against the system and user known_hosts (hashed and [host]:port
entries included) plus an optional fleet file. An unknown host is refused unless the
user opted in with --trust-new-hosts (recorded in the report); a changed key always fails.
"""

from __future__ import annotations

import base64
import logging
import os
import shlex
import sys
import threading

import paramiko

from lora_harness.remote.inventory import Host

# paramiko logs a traceback for every failed handshake (a port that speaks no SSH); the
# failure is reported once, as that host's status, so its log stays out of the terminal.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class HostFailure(Exception):
    """A host that could not be used; `status` is the fleet status it ends with."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class _Policy(paramiko.MissingHostKeyPolicy):
    """Refuse revoked keys; accept an unknown one only where trusted, and remember it."""

    def __init__(self, known: KnownHosts, trust_new: bool, remember: str | None):
        self.known, self.trust_new, self.remember = known, trust_new, remember
        self.trusted: list[str] = []

    def missing_host_key(self, client, hostname, key):
        if self.known.is_revoked(key):
            raise paramiko.SSHException(f"REVOKED host key for {hostname}")
        if not self.trust_new:
            raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.trusted.append(f"{hostname} {key.get_name()} SHA256:{_sha256(key)}")
        if self.remember:
            _remember(self.remember, hostname, key)


_REMEMBER_LOCK = threading.Lock()


def _remember(path: str, hostname: str, key) -> None:
    """Append a newly trusted key, as `ssh -o StrictHostKeyChecking=accept-new` does."""
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    with _REMEMBER_LOCK:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as stream:
            stream.write(line)


class KnownHosts:
    """known_hosts files read line by line, so one line paramiko cannot parse (a marker, a
    typo) never costs every host its connection. `@revoked` keys are refused for any host;
    `@cert-authority` lines are skipped with a warning (paramiko cannot check host
    certificates)."""

    def __init__(self, paths: list[str]):
        self.entries: list = []
        self.revoked: set[bytes] = set()
        self.warnings: list[str] = []
        for path in paths:
            if os.path.isfile(path):
                self._load(path)
        self.entries = [e for e in self.entries if e.key.asbytes() not in self.revoked]

    def _load(self, path: str) -> None:
        with open(path, errors="replace") as stream:
            for number, raw in enumerate(stream, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                where = f"{path}:{number}"
                if line.startswith("@revoked"):
                    self._revoke(line.split(None, 1)[-1], where)
                elif line.startswith("@cert-authority"):
                    self.warnings.append(
                        f"{where}: @cert-authority line skipped (host certificates are not "
                        "supported); add the host's own key to known_hosts"
                    )
                elif line.startswith("@"):
                    self.warnings.append(f"{where}: unknown marker skipped")
                else:
                    self._add(line, where)

    def _add(self, line: str, where: str) -> None:
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        except Exception as exc:  # InvalidHostKey, a bad key blob: skip the line, say so
            entry, reason = None, exc
        else:
            reason = "unsupported key type"
        if entry is None:
            self.warnings.append(f"{where}: line skipped ({reason})")
            return
        self.entries.append(entry)

    def _revoke(self, rest: str, where: str) -> None:
        fields = rest.split()
        try:
            self.revoked.add(base64.b64decode(fields[2]))
        except (IndexError, ValueError):
            self.warnings.append(f"{where}: @revoked line skipped (not 'hosts type key')")

    def is_revoked(self, key) -> bool:
        return key.asbytes() in self.revoked


def _sha256(key) -> str:
    import hashlib

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def connect(
    host: Host,
    known_hosts: list[str],
    trust_new: bool,
    timeout: float,
    remember: str | None = None,
    warn=None,
):
    """An authenticated SSHClient, and the host keys newly trusted on the way (if any)."""
    known = KnownHosts(["/etc/ssh/ssh_known_hosts", *known_hosts])
    for warning in known.warnings:
        (warn or _warn)(warning)
    client = paramiko.SSHClient()
    for entry in known.entries:
        for name in entry.hostnames:
            client.get_host_keys().add(name, entry.key.get_name(), entry.key)
    policy = _Policy(known, trust_new or host.trust_new, remember)
    client.set_missing_host_key_policy(policy)
    sock = None
    if host.proxy_command:
        target = host.proxy_command.replace("%h", shlex.quote(host.hostname))
        sock = paramiko.ProxyCommand(target.replace("%p", str(int(host.port))))
    try:
        client.connect(
            host.hostname,
            port=host.port,
            username=host.user,
            key_filename=host.identity_files or None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            sock=sock,
            allow_agent=True,
            look_for_keys=not host.identity_files,
        )
    except (paramiko.SSHException, TimeoutError, OSError, EOFError) as exc:
        client.close()
        raise _failure(host, exc)
    return client, policy.trusted


_WARNED: set[str] = set()


def _warn(message: str) -> None:
    if message not in _WARNED:  # once per controller run, not once per host
        _WARNED.add(message)
        print(f"lora-harness: warning: known_hosts {message}", file=sys.stderr, flush=True)


def _failure(host: Host, exc: Exception) -> HostFailure:
    """The fleet status and a message that says what to do, for a failed connect."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostFailure(
            "hostkey_rejected",
            f"host key for {host.hostname} CHANGED ({exc.key.get_name()}); "
            "if the host was reinstalled, remove the old line from known_hosts and verify the new key",
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return HostFailure(
            "auth_failed",
            f"authentication as {host.user} failed; check the key "
            "(identity_file, ssh-agent) and the host's authorized_keys",
        )
    if isinstance(exc, paramiko.SSHException):
        if "REVOKED" in str(exc):
            return HostFailure(
                "hostkey_rejected",
                f"host key for {host.hostname}:{host.port} is marked @revoked in known_hosts; "
                "the host must get a new key before it is used",
            )
        if "protocol banner" in str(exc):
            return HostFailure(
                "unreachable",
                f"{host.hostname}:{host.port} does not speak SSH (no SSH banner); check the port",
            )
        if "not found in known_hosts" in str(exc):
            target = host.hostname if host.port == 22 else f"[{host.hostname}]:{host.port}"
            return HostFailure(
                "hostkey_rejected",
                f"unknown host key for {target}; verify it and add it with "
                f"ssh-keyscan -p {host.port} {host.hostname} >> ~/.ssh/known_hosts, or pass --trust-new-hosts",
            )
        return HostFailure(
            "unreachable", f"SSH handshake with {host.hostname}:{host.port} failed: {exc}"
        )
    return HostFailure(
        "unreachable",
        f"cannot reach {host.hostname}:{host.port}: {exc.__class__.__name__}: {exc}",
    )


class KeepaliveMonitor:
    """Keepalives that count missed replies: paramiko's own cannot tell a dead server (#918)."""

    def __init__(self, client, interval: float = 5.0, max_missed: int = 3):
        self.transport = client.get_transport()
        self.interval, self.max_missed = interval, max_missed
        self.missed = 0
        self.dead = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def _run(self):
        while not self._stop.wait(self.interval):
            reply = threading.Thread(
                target=self.transport.global_request, args=("keepalive@openssh.com",), daemon=True
            )
            reply.start()
            reply.join(self.interval)
            self.missed = (
                self.missed + 1 if reply.is_alive() or not self.transport.is_active() else 0
            )
            if self.missed >= self.max_missed:
                self.dead.set()
                self.transport.close()
                return
