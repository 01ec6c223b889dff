"""Connect with verified host keys; classify every way a connection can fail.

Host keys are checked against the system and user known_hosts (hashed and [host]:port
entries included) plus an optional fleet file. An unknown host is refused unless the
user opted in with --trust-new-hosts (recorded in the report); a changed key always fails.
"""

from __future__ import annotations

import os
import threading

import paramiko

from lora_harness.remote.inventory import Host


class HostFailure(Exception):
    """A host that could not be used; `status` is the fleet status it ends with."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class _TrustNew(paramiko.MissingHostKeyPolicy):
    """Accept an unknown key (never a changed one) and remember what was trusted."""

    def __init__(self):
        self.trusted: list[str] = []

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.trusted.append(f"{hostname} {key.get_name()} SHA256:{_sha256(key)}")


def _sha256(key) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def connect(host: Host, known_hosts: list[str], trust_new: bool, timeout: float):
    """An authenticated SSHClient, and the host keys newly trusted on the way (if any)."""
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    for path in known_hosts:
        if os.path.exists(path):
            client.load_host_keys(path)
    policy = _TrustNew() if trust_new else paramiko.RejectPolicy()
    client.set_missing_host_key_policy(policy)
    sock = (
        paramiko.ProxyCommand(
            host.proxy_command.replace("%h", host.hostname).replace("%p", str(host.port))
        )
        if host.proxy_command
        else None
    )
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
        raise _failure(host, exc)
    return client, (policy.trusted if trust_new else [])


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
