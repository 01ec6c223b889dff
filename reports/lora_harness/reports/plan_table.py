"""The per-host table of `remote plan`'s fleet.html: does the run fit each host, and the fix."""

from __future__ import annotations

import html

COLUMNS = (
    "verdict",
    "predicted_peak_gb",
    "budget_gb",
    "budget_source",
    "backend",
    "cheapest_change",
)


def _values(host: dict) -> dict:
    plan = host.get("plan") or {}
    values = dict(plan)
    for key in ("predicted_peak", "budget"):
        raw = plan.get(f"{key}_bytes")
        values[f"{key}_gb"] = f"{raw / 1e9:.2f}" if isinstance(raw, int | float) else None
    return values


def html_table(hosts: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["host", "status", *COLUMNS])
    rows = []
    for host in hosts:
        values = _values(host)
        cells = [host["name"], host["status"], *(values.get(c) for c in COLUMNS)]
        shown = ["—" if c is None else html.escape(str(c)) for c in cells]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in shown) + "</tr>")
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>lora-harness fleet plan'
        "</title><style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 8px}"
        "</style></head><body><h1>lora-harness fleet plan</h1>"
        f'<table id="plan"><tr>{head}</tr>{"".join(rows)}</table></body></html>\n'
    )
