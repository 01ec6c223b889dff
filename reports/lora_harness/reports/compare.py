"""Run-to-run comparison: status flips per check and metric deltas, with regression gates."""

from __future__ import annotations

import math

from lora_harness.core.errors import InputError
from lora_harness.core.terminal import printable
from lora_harness.reports import bench_figures

# metric -> (where it lives in a report, which direction is better)
METRICS = {
    "tokens_per_second": (("metrics", "summary", "tokens_per_second"), "higher"),
    "peak_memory_gb": (("metrics", "summary", "peak_memory_gb"), "lower"),
    "last_loss": (("metrics", "summary", "last_loss"), "lower"),
    "first_step_s": (("metrics", "summary", "first_step_s"), "lower"),
    "voice_score": (("generation", "trained_voice_score"), "higher"),
    "duration_s": (("run", "duration_s"), "lower"),
}


# How json_report.json_safe writes a non-finite number: a NaN loss is a value, not a gap.
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _get(report: dict, path: tuple[str, ...]):
    value = report
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def parse_fail_on(items: list[str]) -> dict[str, float]:
    """['tokens_per_second:5%'] -> {'tokens_per_second': 5.0}."""
    gates = {}
    for item in items or []:
        name, sep, pct = item.partition(":")
        if not sep or (name not in METRICS and name not in bench_figures.FIGURES):
            raise InputError(
                f"--fail-on {item!r}: use METRIC:PCT with METRIC one of {', '.join(METRICS)}, "
                "e.g. tokens_per_second:5%"
            )
        try:
            value = float(pct.strip().rstrip("%"))
        except ValueError:
            raise InputError(f"--fail-on {item!r}: {pct!r} is not a percentage such as 5%")
        if not math.isfinite(value) or value < 0:
            raise InputError(
                f"--fail-on {item!r}: the allowed worsening must be a finite percentage >= 0, "
                "e.g. tokens_per_second:5%"
            )
        if name in gates:
            raise InputError(f"--fail-on {name} is given twice; keep one threshold")
        gates[name] = value
    return gates


def _metric_delta(name: str, before, after, gates: dict) -> dict:
    _, better = METRICS[name]
    entry = {"name": name, "before": before, "after": after, "better": better}
    if before is not None and (after is None or not math.isfinite(after)):
        # The new run lost the metric (NaN, inf, or gone): never a pass for a gate on it.
        broken = {"delta": None, "delta_pct": None, "worse_pct": None, "broken": True}
        return {**entry, **broken, "regression": name in gates}
    if before is None or after is None or not math.isfinite(before):
        return {**entry, "delta": None, "delta_pct": None, "regression": False}
    delta = after - before
    pct = (delta / abs(before) * 100) if before else None
    worse_pct = None if pct is None else (-pct if better == "higher" else pct)
    regression = name in gates and worse_pct is not None and worse_pct > gates[name]
    return {
        **entry,
        "delta": delta,
        "delta_pct": pct,
        "worse_pct": worse_pct,
        "regression": regression,
    }


def compare(before: dict, after: dict, gates: dict[str, float] | None = None) -> dict:
    gates = gates or {}
    statuses_a = {c["name"]: c["status"] for c in before["checks"]}
    statuses_b = {c["name"]: c["status"] for c in after["checks"]}
    changes = [
        {"check": n, "before": statuses_a.get(n), "after": statuses_b.get(n)}
        for n in sorted(set(statuses_a) | set(statuses_b))
        if statuses_a.get(n) != statuses_b.get(n)
    ]
    metrics = [
        _metric_delta(n, _get(before, path), _get(after, path), gates)
        for n, (path, _) in METRICS.items()
    ]
    fingerprint = lambda r: r["environment"].get("hardware_fingerprint")  # noqa: E731
    return {
        "before": before["run"]["id"],
        "after": after["run"]["id"],
        "hardware_differs": fingerprint(before) != fingerprint(after),
        "lora_differs": lora_differences(before, after),
        "status_changes": changes,
        "metrics": metrics,
        "gates": gates,
        "regressions": [m["name"] for m in metrics if m["regression"]],
    }


def lora_differences(before: dict, after: dict) -> dict:
    """LoRA settings that differ between the runs: name -> [before, after]."""
    a, b = before.get("lora") or {}, after.get("lora") or {}
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def describe(result: dict) -> str:
    lines = [f"compare {result['before']} -> {result['after']}"]
    if result["hardware_differs"]:
        lines.append("  NOTE: different hardware; metric deltas compare machines, not code")
    if result.get("lora_differs"):
        changed = ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in result["lora_differs"].items())
        lines.append(f"  NOTE: different LoRA settings ({changed}); deltas compare settings too")
    for change in result["status_changes"]:
        lines.append(f"  {change['check']}: {change['before']} -> {change['after']}")
    if not result["status_changes"]:
        lines.append("  no check changed status")
    for name, host in result.get("hosts", {}).items():
        for m in host["metrics"]:
            if m["regression"]:
                after = _shown(m["after"])
                lines.append(f"  {name}: {m['name']}: {m['before']:.4g} -> {after}  REGRESSION")
    for m in result["metrics"]:
        if m.get("broken"):
            flag = "  REGRESSION" if m["regression"] else ""
            lines.append(f"  {m['name']}: {m['before']:.4g} -> {_shown(m['after'])}{flag}")
        if m["delta"] is None:
            continue
        pct = f" ({m['delta_pct']:+.1f}%)" if m["delta_pct"] is not None else ""
        flag = "  REGRESSION" if m["regression"] else ""
        lines.append(f"  {m['name']}: {m['before']:.4g} -> {m['after']:.4g}{pct}{flag}")
    # Names, ids and settings come from the reports: no ESC sequence reaches the terminal.
    return "\n".join(printable(line) for line in lines)


def _shown(value) -> str:
    return "missing" if value is None else f"{value:.4g}"


def compare_fleets(before: dict, after: dict, gates: dict[str, float] | None = None) -> dict:
    """Per-host status changes between two fleet summaries, and each host's run comparison."""
    from lora_harness.reports.json_report import RUN_KINDS, load

    hosts_a = {h["name"]: h for h in before["hosts"]}
    hosts_b = {h["name"]: h for h in after["hosts"]}
    changes, per_host, regressions = [], {}, []
    for name in sorted(set(hosts_a) | set(hosts_b)):
        a, b = hosts_a.get(name, {}), hosts_b.get(name, {})
        if a.get("status") != b.get("status"):
            changes.append(
                {"check": f"{name}: host", "before": a.get("status"), "after": b.get("status")}
            )
        if a.get("bench") and b.get("bench"):  # remote bench: compare the figures
            result = bench_figures.compare_hosts(
                a["bench"]["figures"], b["bench"]["figures"], gates
            )
            per_host[name] = result
            regressions += [f"{name}: {m}" for m in result["regressions"]]
        elif a.get("report") and b.get("report"):
            result = compare(load(a["report"], RUN_KINDS), load(b["report"], RUN_KINDS), gates)
            per_host[name] = result
            changes += [{**c, "check": f"{name}: {c['check']}"} for c in result["status_changes"]]
            regressions += [f"{name}: {m}" for m in result["regressions"]]
    return {
        "before": before["run"]["id"],
        "after": after["run"]["id"],
        "hardware_differs": any(r["hardware_differs"] for r in per_host.values()),
        "status_changes": changes,
        "metrics": [],
        "hosts": per_host,
        "gates": gates or {},
        "regressions": regressions,
    }
