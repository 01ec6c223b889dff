"""Charts as inline SVG, drawn with matplotlib (Agg, no display, no network)."""

from __future__ import annotations

import io

_STYLE = {
    "svg.fonttype": "none",  # text stays text: small files, selectable labels
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def line_chart(
    series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str
) -> str:
    """One small line chart; `series` maps a label to (x, y) points. Returns an <svg> string."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context(_STYLE):
        figure, axes = plt.subplots(figsize=(4.2, 2.4), dpi=96)
        for label, points in series.items():
            finite = [(x, y) for x, y in points if isinstance(y, (int, float))]
            if finite:
                xs, ys = zip(*finite, strict=True)
                axes.plot(xs, ys, marker="o", markersize=2.5, linewidth=1.4, label=label)
        axes.set_title(title)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        if len(series) > 1:
            axes.legend(frameon=False)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def training_charts(steps: list[dict]) -> list[str]:
    """Loss, tokens/s and memory per step of one run."""
    if not steps:
        return []

    def points(key, scale=1.0):
        return [
            (s["iteration"], s[key] * scale if isinstance(s.get(key), (int, float)) else None)
            for s in steps
        ]

    return [
        line_chart({"loss": points("loss")}, "Training loss", "step", "loss"),
        line_chart(
            {"tokens/s": points("tokens_per_second")},
            "Throughput (loss tokens)",
            "step",
            "tokens/s",
        ),
        line_chart(
            {"peak": points("peak_memory_gb", 1e3), "active": points("active_memory_gb", 1e3)},
            "Memory",
            "step",
            "MB",
        ),
    ]


def trend_charts(history: list[dict]) -> list[str]:
    """Key metrics over the last runs of one machine (see reports.history)."""
    if len(history) < 2:
        return []
    charts = []
    for key, title in [
        ("tokens_per_second", "Tokens/s over runs"),
        ("peak_memory_gb", "Peak memory (GB) over runs"),
        ("voice_score", "Voice score over runs"),
        ("last_loss", "Loss at the last step over runs"),
    ]:
        points = [(i + 1, entry.get(key)) for i, entry in enumerate(history)]
        if any(isinstance(y, (int, float)) for _, y in points):
            charts.append(line_chart({key: points}, title, "run", key))
    return charts
