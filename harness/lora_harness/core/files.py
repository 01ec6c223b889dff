"""Files written so that a reader never sees half of one, with the permissions the umask asks."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
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

    `build` must create the folder atomically (stage and rename). A process that waited
    finds the first one's result and builds nothing.
    """
    folder = Path(folder)
    if (folder / "config.json").exists():
        return
    with exclusive_lock(folder.parent / f".{folder.name}.lock"):
        if not (folder / "config.json").exists():
            build()


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
