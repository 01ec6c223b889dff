"""A host's headline bench figures: what `remote bench` keeps per host, renders and compares.

From one `lora-harness bench` report: tokens/s, step / forward, peak memory, check
overhead, fingerprint bandwidth ratio, the plan's predicted / measured peak, and the
hardware fingerprint they were measured on.
A figure whose measurement was not run (`--only`) is None.
"""

from __future__ import annotations

import html

# figure -> (measurement, key inside it, which direction is better)
FIGURES = {
    "tokens_per_second": ("trainer_vs_mlx_lm", "harness_tokens_per_second", "higher"),
    "trainer_vs_mlx_lm": ("trainer_vs_mlx_lm", "ratio", "higher"),
    "step_over_forward": ("lora_step_vs_forward", "ratio", "lower"),
    "peak_memory_gb": ("memory", "peak_memory_gb", "lower"),
    "check_overhead": ("check_overhead", "ratio", "lower"),
    "fingerprint_bandwidth_ratio": ("fingerprint", "bandwidth_ratio", "higher"),
    # the plan's predicted / measured peak, furthest from 1 over its grid: 1 is best
    "plan_over_measured": ("plan_accuracy", "ratio", "closer to 1"),
}
DEFAULT_GATE_PCT = 5.0  # worse by more than this is a regression unless --fail-on says otherwise


def figures(report: dict) -> dict:
    """The headline figures of a bench report (kind == 'bench')."""
    bench = report.get("bench") or {}
    values = {}
    for name, (measurement, key, _) in FIGURES.items():
        value = (bench.get(measurement) or {}).get(key)
        values[name] = value if isinstance(value, (int, float)) else None
    environment = report.get("environment") or {}
    values["hardware_fingerprint"] = environment.get("hardware_fingerprint")
    values["model"] = (report.get("model") or {}).get("spec")
    return values


def compare_hosts(before: dict, after: dict, gates: dict[str, float] | None = None) -> dict:
    """Per-figure deltas of one host's bench, with a regression flag past the gate."""
    gates = gates or {}
    rows = []
    for name, (_, _, better) in FIGURES.items():
        a, b = before.get(name), after.get(name)
        row = {"name": name, "before": a, "after": b, "better": better, "regression": False}
        if a is not None and b is not None and better == "closer to 1":
            worse_pct = (abs(b - 1) - abs(a - 1)) * 100  # points of distance from 1
            row["worse_pct"] = worse_pct
            row["regression"] = worse_pct > gates.get(name, DEFAULT_GATE_PCT)
        elif a is not None and b is not None and a:
            worse_pct = (b - a) / abs(a) * 100 * (-1 if better == "higher" else 1)
            row["worse_pct"] = worse_pct
            row["regression"] = worse_pct > gates.get(name, DEFAULT_GATE_PCT)
        rows.append(row)
    return {
        "metrics": rows,
        "status_changes": [],
        "hardware_differs": before.get("hardware_fingerprint") != after.get("hardware_fingerprint"),
        "regressions": [r["name"] for r in rows if r["regression"]],
    }


def _cell(value) -> str:
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def html_table(hosts: list[dict]) -> str:
    """The per-host bench table of fleet.html: one row per host of a fleet summary."""
    columns = [*FIGURES, "hardware_fingerprint"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["host", "status", *columns])
    rows = []
    for host in hosts:
        values = (host.get("bench") or {}).get("figures") or {}
        cells = [html.escape(host["name"]), html.escape(host["status"])]
        cells += [_cell(values.get(c)) for c in columns]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>lora-harness fleet bench'
        "</title><style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}</style></head><body><h1>lora-harness fleet bench</h1>"
        f'<table id="bench"><tr>{head}</tr>{"".join(rows)}</table></body></html>\n'
    )
