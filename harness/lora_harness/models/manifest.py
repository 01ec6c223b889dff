"""The manifest that vouches for a cached model folder the harness built (fixture, format
variants): every file's SHA-256, checked before the folder is used, so flipped bytes, a
truncated write or a hostile manifest make a rebuild, never a silent wrong model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from lora_harness.core.files import STAGING


def discard_if_untrusted(folder: Path, label: str) -> None:
    """Move a cached model folder aside (with a warning) unless its manifest vouches for it."""
    if (folder.exists() or folder.is_symlink()) and (problem := verify(folder)):
        import sys

        print(
            f"lora-harness: the cached {label} in {folder} cannot be trusted "
            f"({problem}); rebuilding it",
            file=sys.stderr,
        )
        _discard(folder)


MANIFEST = "fixture_manifest.json"


def verify(folder: Path) -> str | None:
    """What is wrong with a cached fixture folder, or None when every file matches its hash.

    The manifest is data on disk too: only plain names of regular files inside the folder,
    each with a sha256, and every weight and config file listed (a FIFO named there would
    hang the read; a name outside the folder would vouch for nothing)."""
    if folder.is_symlink() or not folder.is_dir():
        return "it is not a folder"
    try:
        expected = json.loads((folder / MANIFEST).read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"it has no readable {MANIFEST}: an older harness or an interrupted build made it"
    if problem := _manifest_problem(folder, expected):
        return problem
    for name, digest in expected.items():
        if _sha256(folder / name) != digest:
            return f"{name} does not match its hash"
    return None


def _manifest_problem(folder: Path, expected) -> str | None:
    import re
    import stat

    if not isinstance(expected, dict) or not expected:
        return f"its {MANIFEST} does not map file names to hashes"
    for name, digest in expected.items():
        if name in (".", "..", MANIFEST) or "/" in name or "\x00" in name:
            return f"its {MANIFEST} names {name[:60]!r}, not a file of the folder"
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            return f"its {MANIFEST} has no sha256 for {name[:60]!r}"
        try:
            mode = (folder / name).lstat().st_mode
        except OSError:
            return f"{name} is missing"
        if not stat.S_ISREG(mode):
            return f"{name} is not a regular file"
    unlisted = [
        p.name
        for p in folder.iterdir()
        if p.name != MANIFEST and (p.suffix in (".safetensors", ".json")) and p.name not in expected
    ]
    return f"{sorted(unlisted)[0]} is not in its {MANIFEST}" if unlisted else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(folder: Path) -> None:
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != MANIFEST)
    manifest = {"sha256": {name: _sha256(folder / name) for name in files}}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _discard(folder: Path) -> None:
    # Rename first: another process never sees a half-deleted folder as a fixture.
    # Named as a staging folder of this process: a kill mid-delete leaves one that the next
    # build sweeps (core.files.sweep_stale_staging).
    aside = folder.with_name(f".{folder.name}{STAGING}{os.getpid()}-corrupt")
    try:
        folder.rename(aside)
    except OSError:
        return  # another process moved it already
    shutil.rmtree(aside, ignore_errors=True)
