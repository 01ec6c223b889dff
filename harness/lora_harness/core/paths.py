"""Output paths checked before any work starts: a run that cannot write its report fails
in its first second with one line (exit 2), never after training with an internal error."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from lora_harness.core.errors import InputError

# argparse dest -> what the option names: a folder the harness writes into, or a file.
OUTPUTS = {
    "out": "folder",
    "history": "folder",
    "adapter_path": "folder",
    "json": "file",
    "save_baseline": "file",
    "html": "file",
    "junit": "file",
    "screenshot": "file",
}


def check_argv(argv: list[str]) -> None:
    """Every argument must be text a UTF-8 report can hold (no NUL, no undecodable bytes)."""
    for index, item in enumerate(argv):
        if "\x00" in item:
            raise InputError(f"argument {index + 1} contains a NUL byte; no path or value can")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            shown = item.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            raise InputError(
                f"argument {index + 1} ({shown}) is not valid UTF-8; the reports are UTF-8 "
                "text, so rename the path (or its folder) to UTF-8"
            )


# Options of these names that a command reads instead of writing.
INPUTS = {("report", "history"), ("doctor", "adapter_path")}


def check_outputs(values: dict, command: str | None = None) -> None:
    """Check each output option in `values` (argparse dests) that is set."""
    for dest, kind in OUTPUTS.items():
        value = values.get(dest)
        if (command, dest) in INPUTS:
            continue
        if value is None or str(value) == "-":
            continue
        check_writable(Path(value), f"--{dest.replace('_', '-')}", kind)
        if dest == "adapter_path":
            _check_adapter_files(Path(value))


# What train and guard write into --adapter-path, by name: a folder or a FIFO already there
# under one of them hung the run (a FIFO opened for writing) or failed it after training.
ADAPTER_FILES = ("adapters.safetensors", "adapter_config.json", "metrics.jsonl")


def _check_adapter_files(folder: Path) -> None:
    for name in ADAPTER_FILES:
        target = folder / name
        if target.exists() and not target.is_file():
            raise InputError(
                f"--adapter-path {folder}: {name} there is not a regular file (a folder, a FIFO "
                "or a device); remove it or pass another folder"
            )


def check_writable(path: Path, flag: str, kind: str) -> None:
    """`path` can be written as a `kind` ("file" or "folder"), or InputError naming `flag`."""
    text = str(path)
    if not text or "\x00" in text:
        raise InputError(f"{flag} {text!r} is not a path")
    target = Path(os.path.abspath(path))
    _check_names(target, flag)
    if target.is_symlink() and not target.exists():
        raise InputError(
            f"{flag} {path} is a symlink to {os.readlink(target)}, which does not exist; "
            "create its target or pass another path"
        )
    if target.exists():
        _check_existing(target, path, flag, kind)
        folder = target if kind == "folder" else target.parent
    else:
        folder = _nearest_folder(target, path, flag)
    _probe(folder, path, flag)


def _check_names(target: Path, flag: str) -> None:
    limit = _name_max(target)
    for part in target.parts:
        if len(os.fsencode(part)) > limit:
            raise InputError(
                f"{flag}: the path component {part[:24]}... is {len(os.fsencode(part))} "
                f"bytes long; this file system allows {limit}"
            )


def _name_max(target: Path) -> int:
    for folder in target.parents:
        if os.path.isdir(folder):  # never raises, even for a name too long to look up
            try:
                return os.pathconf(folder, "PC_NAME_MAX")
            except (OSError, ValueError):
                break
    return 255


def _check_existing(target: Path, path: Path, flag: str, kind: str) -> None:
    if kind == "folder" and not target.is_dir():
        raise InputError(f"{flag} {path} exists and is not a folder; pass a folder")
    if kind == "file" and target.is_dir():
        raise InputError(f"{flag} {path} is a folder; pass a file path")


def _nearest_folder(target: Path, path: Path, flag: str) -> Path:
    """The closest existing ancestor, which the harness will create the rest under."""
    for parent in target.parents:
        if parent.is_symlink() and not parent.exists():
            raise InputError(f"{flag} {path}: {parent} is a symlink to a missing folder")
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{flag} {path}: {parent} is a file, not a folder")
            return parent
    return Path("/")


def _probe(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a file there: the only test that sees read-only mounts, ACLs and
    full inode tables the way the later write will."""
    try:
        handle, name = tempfile.mkstemp(prefix=".lora-harness-probe-", dir=folder)
    except OSError as error:
        raise InputError(
            f"{flag} {path} cannot be written ({error.strerror} in {folder}); pass a writable path"
        )
    os.close(handle)
    os.unlink(name)


# Errors of the machine, not of the harness: one line and exit 2, never "internal error".
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM,
                      errno.ENAMETOOLONG, errno.EFBIG, errno.EIO}  # fmt: skip


def describe(error: OSError) -> str:
    # shutil's sendfile copy names the source first and the file it could not write second.
    target = getattr(error, "filename2", None) or error.filename
    where = f" {target}" if target else ""
    remedy = {
        errno.ENOSPC: "free some space and run again",
        errno.EDQUOT: "free some space (disk quota) and run again",
    }.get(error.errno, "pass a path this user can write")
    return f"could not write{where or ' its output'} ({error.strerror or error}); {remedy}"
