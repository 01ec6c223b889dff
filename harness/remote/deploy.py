"""Deploy the harness: a locally built wheel, content-addressed on the host, in a reused venv.

Layout under the host's work_dir:
    wheels/<sha256>/<wheel>     uploaded once per content hash, verified on the host
    venvs/<env-hash>/           recreated only when the dependency set changes
    runs/<run-id>/              one folder per remote run (report, adapters, pidfile, log)
A second deploy with nothing changed uploads nothing: one hash check, one marker check.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.remote import shell
from lora_harness.remote.connection import HostFailure

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalBuild:
    wheel: Path
    sha256: str
    wheelhouse: list[Path]
    packages: list[Path] = field(default_factory=list)  # --with-local-package wheels


def build_wheel(wheelhouse: Path | None = None) -> LocalBuild:
    """Build this checkout's wheel once per controller run (no network: no build isolation)."""
    if not (PROJECT_ROOT / "pyproject.toml").exists():
        raise InputError(
            "remote deploy builds the harness from its source checkout; install it with pip -e"
        )
    wheel = _pip_wheel(PROJECT_ROOT, "the harness")
    extra = sorted(Path(wheelhouse).glob("*.whl")) if wheelhouse else []
    return LocalBuild(wheel, _sha256(wheel), extra)


def build_local_package(path: Path) -> Path:
    """A user's project (e.g. the backend a --recipe names) as a wheel to install beside ours."""
    path = Path(path).expanduser().resolve()
    if not any((path / name).exists() for name in ("pyproject.toml", "setup.py")):
        raise InputError(
            f"--with-local-package {path}: no pyproject.toml or setup.py there; pass the root "
            "of a pip-installable project"
        )
    return _pip_wheel(path, str(path))


def _pip_wheel(source: Path, what: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="lora-harness-wheel-"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        # Fixed zip timestamps: the same source gives the same bytes, so an unchanged
        # second deploy finds its hash on the host and uploads nothing.
        env={**os.environ, "SOURCE_DATE_EPOCH": "315532800"},
    )
    if done.returncode != 0:
        raise InputError(
            f"could not build the wheel of {what}: {done.stderr.strip().splitlines()[-1:]}"
        )
    (wheel,) = out.glob("*.whl")
    return wheel


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def remote_home(client) -> str:
    return shell.run(client, "echo $HOME", timeout=30).stdout_tail.strip()


def _remote_sha256(client, python: str, path: str) -> str | None:
    code = "import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())"
    result = shell.run(client, shell.quote([python, "-c", code, path]), timeout=120)
    return result.stdout_tail.strip() if result.exit_status == 0 else None


def upload(client, sftp, python: str, local: Path, remote_dir: str, stats: dict) -> str:
    """Upload `local` into remote_dir unless a file with the same hash is already there."""
    digest = _sha256(local)
    target = f"{remote_dir}/{digest}/{local.name}"
    if _remote_sha256(client, python, target) == digest:
        return target
    shell.run(client, shell.quote(["mkdir", "-p", f"{remote_dir}/{digest}"]), timeout=60)
    partial = f"{target}.{secrets.token_hex(4)}.part"  # two uploaders never share one
    sftp.put(str(local), partial)
    stats["bytes_uploaded"] = stats.get("bytes_uploaded", 0) + local.stat().st_size
    sftp.posix_rename(partial, target)
    if _remote_sha256(client, python, target) != digest:
        raise HostFailure("error", f"uploaded {local.name} does not match its hash on the host")
    return target


def ensure_venv(
    client, sftp, build: LocalBuild, python: str, work_dir: str, system_site: bool, stats: dict
) -> str:
    """A venv with the harness wheel installed; returns its python."""
    house = [
        upload(client, sftp, python, w, f"{work_dir}/wheelhouse", stats) for w in build.wheelhouse
    ]
    env_key = hashlib.sha256(f"{python}|{system_site}|{sorted(house)}".encode()).hexdigest()[:16]
    venv = f"{work_dir}/venvs/{env_key}"
    venv_python = f"{venv}/bin/python"
    wheel = upload(client, sftp, python, build.wheel, f"{work_dir}/wheels", stats)
    marker = f"{venv}/.harness-{build.sha256[:16]}"
    if shell.run(client, shell.quote(["test", "-e", marker]), timeout=30).exit_status == 0:
        return _install_local_packages(client, sftp, build, python, venv, work_dir, stats)
    create = [python, "-m", "venv"] + (["--system-site-packages"] if system_site else []) + [venv]
    pip = [venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    offline = pip + ["--no-index"]
    for path in house:
        offline += ["--find-links", path.rsplit("/", 1)[0]]
    # Re-checked under the lock: another entry for the same machine may have installed it.
    # Offline first: deps already present (system site-packages, wheelhouse) need no index.
    script = (
        f"test -e {shell.quote([marker])} || {{ "
        f"{{ test -x {shell.quote([venv_python])} || {shell.quote(create)}; }} && "
        f"{{ {shell.quote(offline + [wheel])} || {shell.quote(pip + [wheel])}; }} && "
        f"touch {shell.quote([marker])} && echo {_INSTALLED}; }}"
    )
    done = _must(client, _locked(python, f"{venv}.lock", script), "install the harness", 3600)
    stats["installed"] = _INSTALLED in done.stdout_tail
    return _install_local_packages(client, sftp, build, python, venv, work_dir, stats)


def _install_local_packages(client, sftp, build, python, venv, work_dir, stats) -> str:
    """Install each --with-local-package wheel into the venv, again whenever its bytes change.

    --force-reinstall because a changed project usually keeps its version; --no-deps because
    its dependencies (mlx, mlx-lm) came with the harness. The marker holds the installed hash.
    """
    venv_python = f"{venv}/bin/python"
    for wheel in build.packages:
        digest = _sha256(wheel)
        remote = upload(client, sftp, python, wheel, f"{work_dir}/wheels", stats)
        marker = f"{venv}/.local-{wheel.name.split('-')[0]}"
        install = [venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        install += ["--no-deps", "--force-reinstall", remote]
        script = (
            f"grep -qx {digest} {shell.quote([marker])} 2>/dev/null || {{ "
            f"{shell.quote(install)} && echo {digest} > {shell.quote([marker])}; }}"
        )
        _must(client, _locked(python, f"{venv}.lock", script), f"install {wheel.name}", 600)
    return venv_python


_INSTALLED = "lora-harness-installed"

# Holds an flock on `lock` while `sh -c script` runs (the descriptor survives the exec), so
# two inventory entries for one machine never build the same venv at once. Python, because
# macOS has no flock(1); the kernel releases it when the script ends, however it ends.
_LOCKER = (
    "import fcntl,os,sys\n"
    "os.makedirs(os.path.dirname(sys.argv[1]),exist_ok=True)\n"
    "f=open(sys.argv[1],'w');fcntl.flock(f,fcntl.LOCK_EX);os.set_inheritable(f.fileno(),True)\n"
    "os.execvp('sh',['sh','-c',sys.argv[2]])"
)


def _locked(python: str, lock: str, script: str) -> str:
    return shell.quote([python, "-c", _LOCKER, lock, script])


def _must(client, command: str, what: str, timeout: float):
    result = shell.run(client, command, timeout=timeout)
    if result.exit_status != 0:
        last = (result.stderr_tail.strip().splitlines() or ["no output"])[-1]
        raise HostFailure("error", f"could not {what} on the host: {last}")
    return result
