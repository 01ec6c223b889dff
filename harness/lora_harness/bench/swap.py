"""Swap activity from the operating system's own counters, not guessed from step times.

A slow step is not swap (a shared machine, a compile, a page-cache miss all look the
same); the kernel counts pages swapped in and out, so the bench reads those before and
after a measurement.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def counters() -> dict | None:
    """Pages swapped in/out so far (and swap in use, where the OS says), or None if unknown."""
    try:
        if sys.platform == "darwin":
            return _macos()
        return _linux(Path("/proc/vmstat").read_text())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _linux(vmstat: str) -> dict:
    values = dict(line.split() for line in vmstat.splitlines() if line.count(" ") == 1)
    return {
        "pages_in": int(values["pswpin"]),
        "pages_out": int(values["pswpout"]),
        "source": "/proc/vmstat pswpin/pswpout",
    }


def _macos() -> dict:
    stat = subprocess.run(["vm_stat"], capture_output=True, text=True, check=True).stdout
    usage = subprocess.run(
        ["sysctl", "-n", "vm.swapusage"], capture_output=True, text=True, check=True
    ).stdout
    used = re.search(r"used = ([\d.]+)M", usage)
    return {
        "pages_in": int(re.search(r"Swapins:\s+(\d+)", stat).group(1)),
        "pages_out": int(re.search(r"Swapouts:\s+(\d+)", stat).group(1)),
        "used_bytes": int(float(used.group(1)) * 2**20) if used else None,
        "source": "vm_stat Swapins/Swapouts, sysctl vm.swapusage",
    }


def activity(before: dict | None, after: dict | None) -> dict:
    """What happened between two readings: pages in/out and whether the machine swapped."""
    if before is None or after is None:
        return {"swapped": None, "reason": "no swap counters on this OS"}
    pages_in = after["pages_in"] - before["pages_in"]
    pages_out = after["pages_out"] - before["pages_out"]
    return {
        "swapped": pages_in > 0 or pages_out > 0,
        "pages_in": pages_in,
        "pages_out": pages_out,
        "swap_used_bytes": after.get("used_bytes"),
        "source": after["source"],
    }
