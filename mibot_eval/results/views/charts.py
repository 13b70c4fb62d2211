"""The leaderboard's charts as PNG bytes (matplotlib, Agg): the headline values with their interval
whiskers (`chart_png`) and the pivot as a coloured grid (`pivot_png`)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from mibot_eval.results.measure.published import HEADLINES
from mibot_eval.results.views.pivot import Pivot, pivot_cell, pivot_labels
from mibot_eval.results.views.tables import number, truth


def pivot_png(pivot: Pivot) -> bytes:
    """The pivot as a colored grid: shade = value / scale (100 %, 5 subtasks), grey = partial."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    records = pivot.frame.to_dict("records")
    labels = [f"{c}\n{r['execution']}" for c, r in zip(pivot_labels(pivot.frame), records, strict=True)]
    figure = Figure(figsize=(3.2 + 1.9 * len(HEADLINES), 1.4 + 0.62 * max(len(records), 1)), dpi=100,
                    layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    cmap = colormaps["Blues"]
    for i, row in enumerate(records):
        for j, h in enumerate(HEADLINES):
            value, partial = row.get(h.column), bool(row.get(h.column + "_partial"))
            shade = None if value is None else min(max(float(value) / (5.0 if h.metric == "avg_len"
                                                                          else 100.0), 0.0), 1.0)
            color = "white" if shade is None else ("#d9dde3" if partial else cmap(0.15 + 0.75 * shade))
            axes.add_patch(Rectangle((j, i), 1, 1, facecolor=color, edgecolor="#9aa5b1"))
            text = pivot_cell(row, h).replace(" [", "\n[").replace(" (partial)", "\npartial")
            dark = shade is not None and not partial and shade > 0.6
            axes.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8,
                      color="white" if dark else "#1d232a", style="italic" if partial else "normal")
    axes.set_xlim(0, len(HEADLINES))
    axes.set_ylim(max(len(records), 1), 0)
    axes.set_xticks([j + 0.5 for j in range(len(HEADLINES))])
    axes.set_xticklabels([h.label.replace(" (%)", "\n(%)").replace(" avg.", "\navg.") for h in HEADLINES],
                         fontsize=8)
    axes.xaxis.tick_top()
    axes.set_yticks([i + 0.5 for i in range(len(records))])
    axes.set_yticklabels(labels, fontsize=8)
    axes.tick_params(length=0)
    if not records:
        axes.text(len(HEADLINES) / 2, 0.5, "no measured headline", ha="center", va="center")
    figure.suptitle("mibot-eval headlines: value [95% CI]; grey = partial; empty = not measured",
                    fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def chart_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Bar chart of the headline values with interval whiskers (percent metrics; avg_len apart)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    percent = [r for r in rows if r.get("metric") != "avg_len" and number(r.get("value")) is not None]
    lengths = [r for r in rows if r.get("metric") == "avg_len" and number(r.get("value")) is not None]
    panels = [(p, label, top) for p, label, top in
              ((percent, "success / average (%)", 100.0), (lengths, "CALVIN avg. length", 5.0)) if p]
    widths = [max(len(p), 2) for p, _, _ in panels] or [2]
    figure = Figure(figsize=(max(6.0, 0.55 * sum(widths) + 2), 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    if not panels:
        figure.text(0.5, 0.5, "no measured rows", ha="center")
    grid = figure.add_gridspec(1, max(len(panels), 1), width_ratios=widths if panels else None)
    for index, (subset, label, top) in enumerate(panels):
        axes = figure.add_subplot(grid[0, index])
        values = [number(r["value"]) or 0.0 for r in subset]
        lows = [v - (number(r.get("ci_low")) if number(r.get("ci_low")) is not None else v)
                for v, r in zip(values, subset, strict=True)]
        highs = [(number(r.get("ci_high")) if number(r.get("ci_high")) is not None else v) - v
                 for v, r in zip(values, subset, strict=True)]
        colors = ["#9aa5b1" if truth(r.get("partial")) else "#2f6db5" for r in subset]
        positions = list(range(len(subset)))
        axes.bar(positions, values, color=colors, yerr=[lows, highs], capsize=3, ecolor="#222")
        reported = [(i, number(r.get("reported"))) for i, r in enumerate(subset)
                    if number(r.get("reported")) is not None]
        if reported:
            axes.scatter([i for i, _ in reported], [v for _, v in reported], marker="_", s=300,
                         color="#d1495b", zorder=3, label="reported")
            axes.legend(loc="lower right", fontsize=7)
        axes.set_xticks(positions)
        axes.set_xticklabels([f"{r.get('suite')}\n{str(r.get('checkpoint'))[:24]}" for r in subset],
                             rotation=60, ha="right", fontsize=7)
        axes.set_ylim(0, top * 1.05)
        axes.set_ylabel(label)
        axes.grid(axis="y", alpha=0.3)
    figure.suptitle("mibot-eval leaderboard (95% intervals: Clopper-Pearson rates, MOVER averages; "
                    "grey = partial)", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
