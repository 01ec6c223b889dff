"""Self-contained HTML from report JSON only: inline CSS and SVG charts, no requests."""

from __future__ import annotations

from pathlib import Path

from lora_harness.reports import charts

_ORDER = {"fail": 0, "error": 1, "warn": 2, "skip": 3, "pass": 4}
_TEMPLATES = Path(__file__).with_name("templates")


def _environment(jinja_autoescape=True):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=jinja_autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _format(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _checks(report: dict) -> list[dict]:
    rows = sorted(report["checks"], key=lambda c: (_ORDER.get(c["status"], 9), c["name"]))
    return [
        {**c, "observed": _format(c["observed"]), "expected": _format(c["expected"])} for c in rows
    ]


def _host_view(report: dict, index: int, history: list[dict] | None) -> dict:
    env, lora, summary = report["environment"], report["lora"], report["summary"]
    generation = report.get("generation")
    counts = ", ".join(
        f"{summary[s]} {s}" for s in ("pass", "warn", "fail", "error", "skip") if summary[s]
    )
    view = {
        "name": env.get("host", f"host {index}"),
        "anchor": f"host-{index}",
        "verdict": summary["verdict"],
        "model": report["model"]["spec"],
        "lora": f"{lora['fine_tune_type']} r={lora['rank']} scale={lora['scale']} "
        f"layers={lora['num_layers']} keys={','.join(lora['keys']) if lora['keys'] else 'all Linear'}",
        "run_id": report["run"]["id"],
        "finished_at": report["run"]["finished_at"],
        "duration": f"{report['run']['duration_s']:.1f} s",
        "machine": f"{env.get('cpu')} · {env.get('os')} · {(env.get('memory_bytes') or 0) / 2**30:.0f} GiB",
        "software": f"Python {env.get('python')} · mlx {env.get('mlx')} · mlx-lm {env.get('mlx_lm')} · "
        f"harness {env.get('harness')}",
        "counts": counts or "no checks",
        "checks": _checks(report),
        "charts": charts.training_charts(report["metrics"]["steps"]),
        "trends": charts.trend_charts(history or []),
        "selftest": _selftest_view(report.get("selftest")),
        "ranks": _ranks_view(report.get("distributed")),
        "generation": None,
    }
    if generation:
        view["generation"] = {
            "trained": _format(generation.get("trained_voice_score")),
            "untrained": _format(generation.get("untrained_voice_score")),
            "samples": _sample_mix(generation["samples"]),
        }
    return view


def _sample_mix(samples: list[dict], each: int = 2) -> list[dict]:
    """A few greedy and a few sampled outputs, rather than the first of one kind."""
    greedy = [s for s in samples if s["mode"] == "greedy"][:each]
    sampled = [s for s in samples if s["mode"] == "sampled"][:each]
    return greedy + sampled


def _selftest_view(section: dict | None) -> dict | None:
    if not section:
        return None
    rows = []
    for fault in section["faults"]:
        verdict = "caught" if fault["caught"] else "no effect" if fault["no_effect"] else "ESCAPED"
        if not fault["caught"] and fault.get("errored"):
            verdict = f"ERRORED in {', '.join(fault['errored'])}"
        badge = "pass" if fault["caught"] else "skip" if fault["no_effect"] else "fail"
        if unkept := fault.get("declared_not_failed"):  # a check that says it catches this
            verdict, badge = f"{verdict}; declared but passed: {', '.join(unkept)}", "fail"
        statuses = [fault.get("statuses", {}).get(c, "skip") for c in section["checks"]]
        rows.append({**fault, "verdict": verdict, "badge": badge, "statuses": statuses})
    return {"checks": section["checks"], "rows": rows}


def _ranks_view(section: dict | None) -> list[dict] | None:
    """One row per rank; a LoRA digest that differs from rank 0's marks a rank out of sync."""
    if not section:
        return None
    first = section["ranks"][0].get("adapter_digest")
    return [
        {**rank, "in_sync": rank.get("adapter_digest") == first and rank["base_changed"] == 0}
        for rank in section["ranks"]
    ]


def _fleet_view(reports: list[dict], infrastructure: list[dict]) -> dict:
    checks = sorted({c["name"] for r in reports for c in r["checks"]})
    rows = []
    for index, report in enumerate(reports):
        statuses = {c["name"]: c["status"] for c in report["checks"]}
        verdict = report["summary"]["verdict"]
        rows.append(
            {
                "name": report["environment"].get("host", f"host {index}"),
                "anchor": f"host-{index}",
                "status": verdict,
                "badge": verdict,
                "statuses": [statuses.get(c) for c in checks],
            }
        )
    for host in infrastructure:
        rows.append(
            {
                "name": host["name"],
                "anchor": None,
                "status": host["status"],
                "badge": "infra",
                "statuses": [None] * len(checks),
            }
        )
    return {"checks": checks, "rows": rows, "infrastructure": [h["name"] for h in infrastructure]}


def render(
    reports: list[dict],
    histories: list[list[dict]] | None = None,
    infrastructure: list[dict] | None = None,
    title: str | None = None,
) -> str:
    """One HTML page for one run, or a fleet of runs (plus hosts that produced none)."""
    histories = histories or [None] * len(reports)
    hosts = [_host_view(r, i, h) for i, (r, h) in enumerate(zip(reports, histories, strict=True))]
    is_fleet = len(reports) > 1 or bool(infrastructure)
    fleet = _fleet_view(reports, infrastructure or []) if is_fleet else None
    verdicts = [r["summary"]["verdict"] for r in reports]
    subtitle = f"{len(reports)} run(s); verdicts: {', '.join(verdicts) or 'none'}"
    heading = title or (
        "lora-harness fleet report" if is_fleet else f"lora-harness report — {hosts[0]['model']}"
    )
    template = _environment().get_template("report.html.j2")
    return template.render(title=heading, subtitle=subtitle, hosts=hosts, fleet=fleet)
