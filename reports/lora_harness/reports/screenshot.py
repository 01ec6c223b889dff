"""A PNG of an HTML report, taken by headless Chromium (for READMEs and CI artifacts)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from lora_harness.core.errors import InputError


def take(html_path: Path, png_path: Path, width: int = 1300, height: int = 1700) -> Path:
    browser = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if browser is None:
        raise InputError("--screenshot needs Chromium on PATH (Debian: apt-get install chromium)")
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png_path}",
            Path(html_path).resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not png_path.exists():
        raise InputError(f"Chromium could not take the screenshot (exit {done.returncode})")
    return png_path
