"""Bring a host's folder home over SFTP, treating every name and file it lists as hostile.

The host decides what its SFTP server lists: names such as `../x` or `/abs`, symlinks to
/dev/zero, FIFOs, trees thousands deep, files that never end. Only plain regular files with
plain names are copied, each resolved inside the target; anything else is skipped and
listed. Bytes are capped per file and per run, the walk is iterative and depth-bounded, and
the deadline is checked on every request and every chunk.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from paramiko import SSHException
from paramiko.sftp import SFTPError

DEFAULT_MAX_FILE_BYTES = 4 * 1024**3  # a large LoRA adapter fits; /dev/zero does not
DEFAULT_MAX_RUN_BYTES = 16 * 1024**3
MAX_DEPTH = 32  # a run folder is a few levels deep
MAX_ENTRIES = 100_000
CHUNK = 256 * 1024


class Deadline(Exception):
    """The collect deadline passed (or the run was interrupted) mid-transfer."""


@dataclass
class Limits:
    deadline: float  # time.monotonic() value
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_run_bytes: int = DEFAULT_MAX_RUN_BYTES
    max_depth: int = MAX_DEPTH

    @classmethod
    def within(cls, seconds: float, **caps) -> Limits:
        return cls(deadline=time.monotonic() + seconds, **caps)

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Deadline("the collect deadline passed")
        return left


@dataclass
class Collected:
    files: int = 0
    bytes: int = 0
    entries: int = 0
    skipped: list[str] = field(default_factory=list)  # "remote path: why"
    incomplete: str = ""  # why the walk stopped early, if it did

    def describe(self) -> dict:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "skipped": self.skipped[:100],
            "skipped_count": len(self.skipped),
            "incomplete": self.incomplete,
        }


def plain_name(name) -> bool:
    """One path component that names a child: no separators, no '.'/'..', no NUL."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
    )


def inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def get_tree(sftp, remote_root: str, local_root: Path, limits: Limits, done=None) -> Collected:
    """Copy remote_root into local_root; never raises for what the host serves."""
    done = done or Collected()
    local_root.mkdir(parents=True, exist_ok=True)
    stack = [(remote_root, local_root, 0)]
    try:
        while stack:
            remote, local, depth = stack.pop()
            _walk_one(sftp, remote, local, depth, local_root, limits, done, stack)
    except Deadline as why:
        done.incomplete = str(why)
    except (OSError, EOFError, SSHException, SFTPError) as error:
        # A socket timeout, a closed channel, or the protocol out of step after a timeout
        # cut a reply in half (closing the file then reads "Garbage packet received").
        done.incomplete = _transfer_failure(error)
    return done


def _transfer_failure(error: BaseException) -> str:
    """What stopped the transfer: the first error, not one raised while cleaning up after it."""
    cause = error.__context__ if isinstance(error.__context__, (OSError, EOFError)) else error
    if isinstance(cause, TimeoutError):
        return "the collect deadline passed while a transfer waited (timeout)"
    return f"transfer failed: {cause.__class__.__name__}: {cause}"


def _walk_one(sftp, remote, local, depth, root, limits, done, stack) -> None:
    sftp.get_channel().settimeout(limits.remaining())
    for entry in sftp.listdir_attr(remote):
        done.entries += 1
        if done.entries > MAX_ENTRIES:
            raise Deadline(f"more than {MAX_ENTRIES} entries; stopped listing")
        name, source = entry.filename, f"{remote}/{entry.filename}"
        target = local / name if plain_name(name) else None
        if target is None or not inside(root, target):
            done.skipped.append(f"{remote}/{name!r}: not a plain file name")
            continue
        mode = entry.st_mode or 0
        if stat.S_ISDIR(mode):
            if depth + 1 > limits.max_depth:
                done.skipped.append(f"{source}: deeper than {limits.max_depth} levels")
                continue
            target.mkdir(exist_ok=True)
            if target.is_symlink() or not target.is_dir():
                done.skipped.append(f"{source}: local path is not a folder")
                continue
            stack.append((source, target, depth + 1))
        elif stat.S_ISREG(mode):
            _get_file(sftp, source, target, entry.st_size or 0, limits, done)
        else:
            kind = "symlink" if stat.S_ISLNK(mode) else "special file"
            done.skipped.append(f"{source}: {kind} (only regular files are copied)")


def _get_file(sftp, source: str, target: Path, size: int, limits: Limits, done) -> None:
    if size > limits.max_file_bytes:
        done.skipped.append(f"{source}: {size} bytes, over the per-file cap")
        return
    budget = limits.max_run_bytes - done.bytes
    if size > budget:
        done.skipped.append(f"{source}: over the per-run byte cap")
        return
    cap = min(limits.max_file_bytes, budget)
    sftp.get_channel().settimeout(limits.remaining())
    with sftp.open(source, "rb") as stream:
        # Listed as regular, but the name may have been swapped for a link since.
        if not stat.S_ISREG(stream.stat().st_mode or 0):
            done.skipped.append(f"{source}: no longer a regular file")
            return
        if size:
            stream.prefetch(min(size, cap))
        copied = _copy(sftp, stream, target, cap, limits)
    if copied is None:
        done.skipped.append(f"{source}: grew past the byte cap while copying")
        return
    done.files, done.bytes = done.files + 1, done.bytes + copied


def _copy(sftp, stream, target: Path, cap: int, limits: Limits) -> int | None:
    partial = target.with_name(f".{target.name}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    copied = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                sftp.get_channel().settimeout(limits.remaining())
                chunk = stream.read(CHUNK)
                if not chunk:
                    break
                copied += len(chunk)
                if copied > cap:
                    return None
                out.write(chunk)
        os.replace(partial, target)
        return copied
    finally:
        partial.unlink(missing_ok=True)
