"""Real OpenSSH sshd processes on loopback, one per simulated host, for the runner tests."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {folder}/host_key
PidFile {folder}/sshd.pid
AuthorizedKeysFile {authorized}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin yes
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
MaxSessions 50
MaxStartups 50
"""


def available() -> bool:
    return os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None and os.geteuid() == 0


def keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SshdHost:
    folder: Path
    port: int
    host_public_key: str
    process: subprocess.Popen | None = None

    @classmethod
    def start(cls, folder: Path, authorized_keys: Path, banner: str | None = None) -> SshdHost:
        """`banner`: a line the login shell prints around every command (on stdout, and once
        on stderr), as an rc file's echo or a motd does; SFTP stays clean, as it must."""
        folder.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir
        public = keygen(folder / "host_key")
        port = free_port()
        config = CONFIG.format(port=port, folder=folder, authorized=authorized_keys)
        if banner is not None:
            config += f"ForceCommand {_banner_shell(folder, banner)}\n"
        (folder / "sshd_config").write_text(config)
        host = cls(folder, port, public)
        host.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(folder / "sshd_config")],
            stderr=open(folder / "sshd.log", "w"),
            start_new_session=True,
        )
        host.wait_listening()
        return host

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"sshd on {self.port} did not start: {(self.folder / 'sshd.log').read_text()}"
        )

    def known_hosts_line(self) -> str:
        kind, key = self.host_public_key.split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}"

    def kill_all(self) -> None:
        """The listener and every process under it: as if the machine fell off the network."""
        if not self.process or self.process.poll() is not None:
            return
        for pid in descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


SFTP_SERVER = next(
    (p for p in ("/usr/lib/openssh/sftp-server", "/usr/lib/sftp-server") if os.path.exists(p)),
    "/usr/lib/openssh/sftp-server",
)


def _banner_shell(folder: Path, banner: str) -> Path:
    """A forced command that prints `banner` before and after the client's command."""
    script = folder / "banner-shell"
    script.write_text(
        "#!/bin/sh\n"
        'case "$SSH_ORIGINAL_COMMAND" in\n'
        f"  internal-sftp|sftp|*sftp-server) exec {SFTP_SERVER} ;;\n"
        "esac\n"
        f"printf '%s\\n' {shlex.quote(banner)}; printf '%s\\n' {shlex.quote(banner)} >&2\n"
        '/bin/sh -c "$SSH_ORIGINAL_COMMAND"; s=$?\n'
        f"printf '%s\\n' {shlex.quote(banner)}\n"
        "exit $s\n"
    )
    script.chmod(0o755)
    return script


def descendants(root: int) -> list[int]:
    """Every process below `root`, read from /proc (per-connection sshd children included)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def base_python() -> str:
    """The interpreter this venv was made from: a host venv made from it (no system site
    packages) cannot see this checkout, its editable install, nor this venv's packages."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def runtime_wheelhouse(folder: Path) -> Path:
    """The harness's runtime dependencies as wheels, pinned by constraints.txt, downloaded
    once per test session (pip's cache makes a repeat fast); hosts install them offline."""
    done_marker = folder / ".complete"
    if done_marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
         "-d", str(folder), "-c", str(ROOT / "constraints.txt"), *project["dependencies"]],
        check=True, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    done_marker.write_text("")
    return folder


def shared_remote_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """(work dir, wheelhouse) shared by every remote test of the session: the host venv is
    built once, as on a real host whose ~/.lora-harness is reused."""
    # A developer may keep them between sessions: LORA_HARNESS_TEST_REMOTE_DIR=/some/dir.
    kept = os.environ.get("LORA_HARNESS_TEST_REMOTE_DIR")
    base = Path(kept) if kept else tmp_path_factory.getbasetemp()
    return base / "remote-work", runtime_wheelhouse(base / "remote-wheelhouse")
