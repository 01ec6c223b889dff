"""Write the HTML and JUnit renderings of report documents next to them, atomically."""

from __future__ import annotations

from pathlib import Path

from lora_harness.core.files import write_atomic
from lora_harness.reports import history as run_history
from lora_harness.reports import html, junit


def write_html(
    path: Path, reports: list[dict], history_dir: Path | None = None, infrastructure=None
) -> Path:
    histories = [_history(history_dir, r) if history_dir else None for r in reports]
    return write_atomic(path, html.render(reports, histories, infrastructure))


def _history(history_dir: Path, report: dict) -> list[dict]:
    """The machine's past runs, ending with this one (appended to the file only after)."""
    entries = run_history.load(history_dir, report["environment"])
    if report.get("kind") == "run" and all(e.get("run_id") != report["run"]["id"] for e in entries):
        entries.append(run_history.summary_of(report))
    return entries


def write_junit(path: Path, reports: list[dict]) -> Path:
    return write_atomic(path, junit.render(reports))


def write_beside(
    report_path: Path, report: dict, history_dir: Path | None = None
) -> dict[str, Path]:
    """report.html and junit.xml in the folder of report.json."""
    folder = Path(report_path).parent
    return {
        "html": write_html(folder / "report.html", [report], history_dir),
        "junit": write_junit(folder / "junit.xml", [report]),
    }
