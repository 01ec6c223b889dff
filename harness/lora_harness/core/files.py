"""Files written so that a reader never sees half of one, with the permissions the umask asks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file in the same folder and rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; reports follow the umask
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def folder_mode() -> int:
    """The mode `mkdir` gives a new folder under the current umask (mkdtemp makes 0700)."""
    return 0o777 & ~_umask()


def copy_tree_atomic(source: Path, target: Path) -> Path:
    """Copy the files of `source` into a new folder `target`: staged beside it and renamed,
    so a full disk or a kill never leaves a truncated file under its final name."""
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        for item in sorted(source.iterdir()):
            if item.is_file() and not item.is_symlink():
                shutil.copyfile(item, staging / item.name)  # contents only: modes from umask
                os.chmod(staging / item.name, 0o666 & ~_umask())
        os.chmod(staging, folder_mode())
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def build_once(folder: Path, build) -> None:
    """Call build() unless `folder`/config.json exists, one process at a time.

    `build` must create the folder atomically (stage and rename, in a staging_folder). A
    process that waited finds the first one's result and builds nothing. Staging folders
    that killed builds left beside it are removed first (sweep_stale_staging).
    """
    folder = Path(folder)
    if (folder / "config.json").exists():
        return
    with exclusive_lock(folder.parent / f".{folder.name}.lock"):
        sweep_stale_staging(folder.parent)
        if not (folder / "config.json").exists():
            build()


# A staging folder is named after its target and its owner's pid, and its owner holds an
# flock on the folder itself for as long as it builds: a sweeper removes one only when that
# process is gone and the lock is free, never one a live process is still writing.
STAGING = ".lh-staging-"
_STAGING_NAME = re.compile(r"^\..*" + re.escape(STAGING) + r"(\d+)-[A-Za-z0-9_]+$")


@contextlib.contextmanager
def staging_folder(target: Path):
    """A new hidden folder beside `target` to build it in (then rename it into place),
    locked while the block runs and removed after it unless it was renamed away."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}{STAGING}{os.getpid()}-", dir=target.parent)
    )
    handle = os.open(staging, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)  # kept through a rename: it locks the inode
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(handle)


def sweep_stale_staging(folder: Path) -> int:
    """Remove the staging folders in `folder` that killed builds left (SIGKILL, power loss):
    their owner process is gone and nobody holds their lock. Returns how many."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        match = _STAGING_NAME.match(entry.name)
        if not match or not entry.is_dir(follow_symlinks=False) or _alive(int(match[1])):
            continue
        try:
            handle = os.open(entry.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            continue  # a live builder (another pid namespace, say) holds it
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += not os.path.lexists(entry.path)
        finally:
            os.close(handle)
    if removed:
        print(
            f"lora-harness: removed {removed} staging folder(s) an interrupted build left "
            f"in {folder}",
            file=sys.stderr,
        )
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    try:  # a killed process its parent has not reaped yet is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold an exclusive flock on `path` (created if missing) for the block.

    Two processes that would build the same cached folder (pytest-xdist workers, two
    terminals) take turns: the second finds the first's result instead of building again.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
