"""A static, self-contained HTML leaderboard: one file that opens offline from disk.

Inline CSS, charts as base64 PNG data URIs, no scripts, fonts or links to fetch: the leaderboard
table (table#leaderboard), the pivot of benchmark headlines (table#pivot: one row per checkpoint and
execution mode, cells value [95% CI], class "partial" / "complete" / "empty"), the chart, the figures
other models' authors reported (table#published, its own section, never among the measured rows;
sources as text, not links), and per run its suites (Clopper-Pearson intervals) and its full
manifest. Every table names its interval method (a column, or its heading).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from mibot_eval.results.measure.published import HEADLINES, Headline
from mibot_eval.results.measure.summary import RunSummary, execution_label
from mibot_eval.results.numbers import fmt, fmt_ci
from mibot_eval.results.records import utc_now
from mibot_eval.results.stats.intervals import RATE_METHOD

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1200px;
color:#1d232a;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{border:1px solid #ccd;padding:.3em .6em;text-align:left}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.scroll{overflow-x:auto}
tr.partial td,td.partial{color:#6b7280;font-style:italic}
table#published td{max-width:36em}
pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:.8em}
img{max-width:100%;border:1px solid #ccd}
.meta{color:#555;font-size:.9em}
"""

COLUMNS = (  # (heading, row field, numeric)
    ("checkpoint", "checkpoint", False), ("suite", "suite", False), ("metric", "metric", False),
    ("value", "value", True), ("95% CI", "_ci", True), ("CI method", "method", False), ("n", "n", True),
    ("reported", "reported", True), ("delta", "delta", True),
    ("consistent with reported", "_consistent", False), ("coverage %", "coverage", True),
    ("errors", "errors", True), ("s / episode", "sec_per_episode", True),
    ("execution", "execution", False), ("protocol", "protocol", False),
)


def _num(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _cell(row: Mapping[str, Any], field: str) -> str:
    metric = str(row.get("metric") or "")
    if field == "_ci":
        return fmt_ci(_num(row.get("ci_low")), _num(row.get("ci_high")), metric)
    if field == "_consistent":
        value = row.get("consistent_with_reported")
        return "–" if value in (None, "") else ("yes" if str(value).lower() == "true" else "no")
    if field in ("value", "reported", "delta"):
        return fmt(_num(row.get(field)), metric)
    value = row.get(field)
    return "–" if value in (None, "") else str(value)


def leaderboard_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h, _, _ in COLUMNS)
    body = []
    for row in rows:
        partial = str(row.get("partial")).lower() == "true"
        cells = "".join(
            f'<td class="{"num" if numeric else "txt"}" data-col="{escape(field.strip("_"))}">'
            f"{escape(_cell(row, field))}</td>"
            for _, field, numeric in COLUMNS
        )
        body.append(f'<tr class="{"partial" if partial else "complete"}">{cells}</tr>')
    return (f'<div class="scroll"><table id="leaderboard"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def pivot_cell(row: Mapping[str, Any], h: Headline) -> tuple[str, str]:
    """(text, class) of one pivot cell: '98.7 [98.2, 99.2]' (+ ' (partial)'), '' when not measured."""
    value, partial = _num(row.get(h.column)), row.get(h.column + "_partial")
    if value is None and partial in (None, ""):
        return "", "empty"
    interval = fmt_ci(_num(row.get(h.column + "_ci_low")), _num(row.get(h.column + "_ci_high")), h.metric)
    text = "–" if value is None else f"{fmt(value, h.metric)} {interval}"
    partial = partial is True or str(partial).lower() == "true"
    return (text + " (partial)", "partial") if partial else (text, "complete")


def pivot_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """table#pivot from the leaderboard's pivot rows (checkpoint, checkpoint_id, execution, and per
    headline H: H, H_ci_low, H_ci_high, H_partial)."""
    headings = ("checkpoint", "execution", *(h.label for h in HEADLINES))
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    ids: dict[str, set[str]] = {}
    for row in rows:
        ids.setdefault(str(row.get("checkpoint") or ""), set()).add(str(row.get("checkpoint_id") or ""))
    body = []
    for row in rows:
        name, ident = str(row.get("checkpoint") or ""), str(row.get("checkpoint_id") or "")
        label = f"{name} ({ident[:8]})" if len(ids[name]) > 1 else name
        cells = [f'<td class="txt" data-col="checkpoint" title="{escape(ident)}">{escape(label)}</td>',
                 f'<td class="txt" data-col="execution">{escape(str(row.get("execution") or ""))}</td>']
        for h in HEADLINES:
            text, kind = pivot_cell(row, h)
            cells.append(f'<td class="num {kind}" data-col="{escape(h.column)}">{escape(text)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table id="pivot"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


PUBLISHED_FIELDS = ("model", "headline", "value", "protocol", "source", "url")


def published_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """table#published: figures reported by others (results/measure/published.py), sources as plain text."""
    if not rows:
        return '<p class="meta" id="published-none">No published figures are shipped.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in PUBLISHED_FIELDS)
    body = []
    for row in rows:
        cells = []
        for name in PUBLISHED_FIELDS:
            value = row.get(name)
            text = f"{float(value):g}" if name == "value" and value not in (None, "") else str(value or "")
            cells.append(f'<td class="{"num" if name == "value" else "txt"}" data-col="{name}">'
                         f"{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table id="published"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _run_section(summary: RunSummary) -> str:
    rows = []
    for suite in summary.suites.values():
        rate = suite.rate
        rows.append(
            f'<tr class="{"partial" if suite.partial else "complete"}"><td>{escape(suite.name)}</td>'
            f'<td class="num">{fmt(rate.value)}</td>'
            f'<td class="num">{escape(fmt_ci(*(rate.interval() or (None, None))))}</td>'
            f'<td class="num">{rate.successes:g} / {rate.n}</td><td class="num">{suite.errors}</td>'
            f"<td>{escape(suite.status)}</td></tr>"
        )
    manifest = json.dumps(summary.manifest, indent=2, sort_keys=True, default=str)
    return (
        f'<section class="run" id="run-{escape(summary.run)}"><h3>{escape(summary.run)}</h3>'
        f'<p class="meta">checkpoint {escape(summary.checkpoint)} '
        f"({escape(summary.checkpoint_id[:16])}), execution {escape(execution_label(summary.execution))}"
        f"</p><table><thead><tr><th>suite</th><th>success %</th><th>95% CI ({RATE_METHOD})</th>"
        "<th>successes / n</th>"
        f"<th>errors</th><th>status</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f"<details><summary>manifest.json</summary><pre>{escape(manifest)}</pre></details></section>"
    )


def render_html(rows: Sequence[Mapping[str, Any]], runs: Sequence[RunSummary], markdown: str,
                chart_png: bytes, pivot: Sequence[Mapping[str, Any]] = (),
                published: Sequence[Mapping[str, Any]] = ()) -> str:
    """The whole page as one string (the leaderboard's markdown, chart, pivot rows and published
    figures are given)."""
    chart = base64.b64encode(chart_png).decode("ascii")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>mibot-eval leaderboard</title><style>{CSS}</style></head><body>"
        "<h1>mibot-eval leaderboard</h1>"
        f'<p class="meta">Generated {escape(utc_now())} from recorded episodes. Rates are success '
        "over independent trials (an errored episode counts as a failure); 95% intervals are "
        "Clopper-Pearson for rates, MOVER over Clopper-Pearson terms for averages and Clopper-Pearson "
        "on avg_len / 5 for CALVIN's average length (each row names its method). \"consistent with "
        "reported\": the two-sided test of value - reported does not reject at 0.05, two-sample "
        "against the release's logged episodes where they hold the number. Italic grey rows are "
        "partial runs.</p>"
        f"<h2>Leaderboard</h2>{leaderboard_table(rows)}"
        '<h2>Pivot: benchmark headlines</h2><p class="meta">One row per checkpoint and execution mode: '
        "value [95% CI] (MOVER over Clopper-Pearson terms; CALVIN: Clopper-Pearson on avg_len / 5); "
        "(partial) when the run covers less than the protocol; empty when not measured. "
        f"Official protocols only.</p>{pivot_table(pivot)}"
        f'<h2>Chart</h2><img id="chart" alt="leaderboard bar chart with 95% intervals" '
        f'src="data:image/png;base64,{chart}">'
        '<h2 id="reported-by-others">Reported by others (not measured here)</h2><p class="meta">'
        "Headlines other models' authors published for these benchmarks, copied from the cited source "
        "(mibot_eval/data/published/); never measured by this harness and never part of the tables "
        f"above.</p>{published_table(published)}"
        f"<h2>Runs</h2>{''.join(_run_section(s) for s in runs)}"
        f"<h2>Markdown</h2><details><summary>leaderboard.md</summary><pre>{escape(markdown)}</pre>"
        "</details></body></html>\n"
    )


def write_html(out_dir: Path, rows: Sequence[Mapping[str, Any]], runs: Sequence[RunSummary],
               markdown: str, chart_png: bytes, pivot: Sequence[Mapping[str, Any]] = (),
               published: Sequence[Mapping[str, Any]] = ()) -> Path:
    """Write out_dir/index.html; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(render_html(rows, runs, markdown, chart_png, pivot, published), encoding="utf-8")
    return path
