"""Deploy the harness: a locally built wheel, content-addressed on the host, in a reused venv.

Layout under the host's work_dir:
    wheels/<sha256>/<wheel>     uploaded once per content hash, verified on the host
    venvs/<env-hash>/           recreated only when the dependency set changes
    runs/<run-id>/              one folder per remote run (report, adapters, pidfile, log)
A second deploy with nothing changed uploads nothing: one hash check, one marker check.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.remote import shell
from lora_harness.remote.connection import HostFailure
from lora_harness.remote.phase import Phase

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class LocalBuild:
    wheel: Path
    sha256: str
    wheelhouse: list[Path]
    packages: list[Path] = field(default_factory=list)  # --with-local-package wheels

    def cleanup(self) -> None:
        shutil.rmtree(self.wheel.parent, ignore_errors=True)

    def __enter__(self) -> LocalBuild:
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()


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
    atexit.register(shutil.rmtree, out, True)  # also when a caller forgets cleanup()
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
        shutil.rmtree(out, ignore_errors=True)
        raise InputError(
            f"could not build the wheel of {what}: {done.stderr.strip().splitlines()[-1:]}"
        )
    (wheel,) = out.glob("*.whl")
    return wheel


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def remote_home(client, phase: Phase | None = None) -> str:
    phase = phase or Phase("connect", 30)
    home = phase.run(client, "printf '%s\\n' \"$HOME\"", parse=True).stdout_tail.strip()
    if not home.startswith("/") or "\n" in home:
        raise HostFailure("error", f"the host's $HOME is not an absolute path: {home[:80]!r}")
    return home


_PROBE = "import sys,venv;print('%d.%d' % sys.version_info[:2])"
_HASHES = (
    "import hashlib,json,os,sys\n"
    "def h(p):\n"
    "    if not os.path.isfile(p): return None\n"
    "    d=hashlib.sha256()\n"
    "    with open(p,'rb') as f:\n"
    "        for b in iter(lambda: f.read(1<<20), b''): d.update(b)\n"
    "    return d.hexdigest()\n"
    "print(json.dumps({p: h(p) for p in sys.argv[1:]}))"
)


def check_python(client, python: str, phase: Phase) -> None:
    """The interpreter the venv is made from exists and can make venvs."""
    done = phase.run(client, f"{shell.quote([python, '-c', _PROBE])} 2>&1", parse=True)
    if done.exit_status == 127 or "not found" in done.stdout_tail.lower():
        raise HostFailure(
            "error",
            f"host interpreter {python!r} not found; set `python` for this host in the fleet "
            "TOML or pass --remote-python",
        )
    if done.exit_status != 0:
        last = (done.stdout_tail.strip().splitlines() or ["no output"])[-1]
        raise HostFailure("error", f"host interpreter {python!r} cannot make a venv: {last}")


def _remote_hashes(client, python: str, paths: list[str], phase: Phase) -> dict:
    if not paths:
        return {}
    done = phase.run(client, shell.quote([python, "-c", _HASHES, *paths]), parse=True)
    try:
        return json.loads(done.stdout_tail) if done.exit_status == 0 else {}
    except ValueError:
        return {}


def upload(client, sftp, python: str, local: Path, remote_dir: str, stats: dict, phase=None):
    """Upload `local` into remote_dir unless a file with the same hash is already there."""
    return upload_all(client, sftp, python, [local], remote_dir, stats, phase)[0]


def upload_all(client, sftp, python, files, remote_dir, stats, phase=None) -> list[str]:
    """Upload what the host lacks (by content hash); one hash round trip for all of them."""
    phase = phase or Phase("deploy", 1800)
    digests = {Path(f): _sha256(f) for f in files}
    targets = {f: f"{remote_dir}/{d}/{f.name}" for f, d in digests.items()}
    present = _remote_hashes(client, python, list(targets.values()), phase)
    missing = [f for f in targets if present.get(targets[f]) != digests[f]]
    if missing:
        folders = sorted({t.rsplit("/", 1)[0] for f, t in targets.items() if f in missing})
        phase.run(client, shell.quote(["mkdir", "-p", *folders]))
    for local in missing:
        _put(sftp, local, targets[local], phase)
        stats["bytes_uploaded"] = stats.get("bytes_uploaded", 0) + local.stat().st_size
    check = _remote_hashes(client, python, [targets[f] for f in missing], phase)
    for local in missing:
        if check.get(targets[local]) != digests[local]:
            raise HostFailure("error", f"uploaded {local.name} does not match its hash on the host")
    return [targets[Path(f)] for f in files]


def _put(sftp, local: Path, target: str, phase: Phase) -> None:
    partial = f"{target}.{secrets.token_hex(4)}.part"  # two uploaders never share one
    sftp.get_channel().settimeout(phase.remaining())
    sftp.put(str(local), partial, callback=lambda *_: phase.remaining())
    sftp.posix_rename(partial, target)


def ensure_venv(
    client,
    sftp,
    build: LocalBuild,
    python: str,
    work_dir: str,
    system_site: bool,
    stats: dict,
    phase: Phase | None = None,
) -> str:
    """A venv with the harness wheel installed; returns its python. Every step, lock waits
    and the install included, ends by `phase`'s deadline or Ctrl-C."""
    phase = phase or Phase("deploy", 1800)
    check_python(client, python, phase)
    house = upload_all(
        client, sftp, python, build.wheelhouse, f"{work_dir}/wheelhouse", stats, phase
    )
    env_key = hashlib.sha256(f"{python}|{system_site}|{sorted(house)}".encode()).hexdigest()[:16]
    venv = f"{work_dir}/venvs/{env_key}"
    venv_python = f"{venv}/bin/python"
    (wheel,) = upload_all(client, sftp, python, [build.wheel], f"{work_dir}/wheels", stats, phase)
    marker = f"{venv}/.harness-{build.sha256[:16]}"
    if phase.run(client, shell.quote(["test", "-e", marker])).exit_status == 0:
        return _install_local_packages(client, sftp, build, python, venv, work_dir, stats, phase)
    create = [python, "-m", "venv"] + (["--system-site-packages"] if system_site else []) + [venv]
    pip = [venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    offline = pip + ["--no-index"]
    for folder in sorted({path.rsplit("/", 1)[0] for path in house}):
        offline += ["--find-links", folder]
    # Re-checked under the lock: another entry for the same machine may have installed it.
    # Offline first: deps already present (system site-packages, wheelhouse) need no index.
    script = (
        f"test -e {shell.quote([marker])} || {{ "
        f"{{ test -x {shell.quote([venv_python])} || {shell.quote(create)}; }} && "
        f"{{ {shell.quote(offline + [wheel])} || {shell.quote(pip + [wheel])}; }} && "
        f"touch {shell.quote([marker])} && echo {_INSTALLED}; }}"
    )
    command = _locked(python, f"{venv}.lock", phase.remaining(), script)
    done = _must(client, command, "install the harness", phase)
    stats["installed"] = _INSTALLED in done.stdout_tail
    return _install_local_packages(client, sftp, build, python, venv, work_dir, stats, phase)


def _install_local_packages(client, sftp, build, python, venv, work_dir, stats, phase) -> str:
    """Install each --with-local-package wheel into the venv, again whenever its bytes change.

    --force-reinstall because a changed project usually keeps its version; --no-deps because
    its dependencies (mlx, mlx-lm) came with the harness. The marker holds the installed hash.
    """
    venv_python = f"{venv}/bin/python"
    for wheel in build.packages:
        digest = _sha256(wheel)
        remote = upload(client, sftp, python, wheel, f"{work_dir}/wheels", stats, phase)
        marker = f"{venv}/.local-{wheel.name.split('-')[0]}"
        install = [venv_python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        install += ["--no-deps", "--force-reinstall", remote]
        script = (
            f"grep -qx {digest} {shell.quote([marker])} 2>/dev/null || {{ "
            f"{shell.quote(install)} && echo {digest} > {shell.quote([marker])}; }}"
        )
        command = _locked(python, f"{venv}.lock", phase.remaining(), script)
        _must(client, command, f"install {wheel.name}", phase)
    return venv_python


_INSTALLED = "lora-harness-installed"

# Holds an flock on `lock` while `sh -c script` runs, so two inventory entries for one
# machine never build the same venv at once (Python: macOS has no flock(1)). It waits for
# the lock and for the script only while the controller is there: when the controller
# closes the channel (deadline, Ctrl-C, lost connection) stdin reaches EOF, and the waiter
# exits, killing the script's process group, so no waiter or pip is left behind.
_LOCKER = """\
import fcntl,os,select,signal,subprocess,sys,time
lock,end,script=sys.argv[1],time.monotonic()+float(sys.argv[2]),sys.argv[3]
def gone():
    ready=select.select([0],[],[],0.2)[0]
    return bool(ready) and not os.read(0,4096)
def stop(why,code):
    sys.stderr.write(why+'\\n');sys.exit(code)
os.makedirs(os.path.dirname(lock),exist_ok=True)
f=open(lock,'w')
while True:
    try:
        fcntl.flock(f,fcntl.LOCK_EX|fcntl.LOCK_NB);break
    except BlockingIOError:
        pass
    if time.monotonic()>end:stop('timed out waiting for the deploy lock '+lock,124)
    if gone():stop('controller left while waiting for the deploy lock',130)
child=subprocess.Popen(['sh','-c',script],stdin=subprocess.DEVNULL,start_new_session=True)
while child.poll() is None:
    if time.monotonic()>end or gone():
        os.killpg(child.pid,signal.SIGKILL);child.wait()
        stop('install stopped: deadline or controller gone',124)
sys.exit(child.returncode)
"""


def _locked(python: str, lock: str, seconds: float, script: str) -> str:
    return shell.quote([python, "-c", _LOCKER, lock, f"{seconds:.1f}", script])


def _must(client, command: str, what: str, phase: Phase):
    result = phase.run(client, command, parse=True)
    if result.exit_status != 0:
        last = (result.stderr_tail.strip().splitlines() or ["no output"])[-1]
        if result.exit_status == 124:
            raise HostFailure("timeout", f"could not {what} on the host in time: {last}")
        raise HostFailure("error", f"could not {what} on the host: {last}")
    return result
