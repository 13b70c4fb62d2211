"""The report of one run: its summary rendered as markdown and long-form CSV.

`report_run(run_dir)` returns markdown (suites with Clopper-Pearson intervals, aggregates with MOVER
intervals, the comparison with the reported numbers (two-sample against the release's logged
episodes, Holm-adjusted) and, task by task, with the release's own outcomes, per-task tables,
errors, latency, seconds per episode; every table names its interval method) and writes
`report.md` and `report.csv` beside the run. Every number comes from results/measure/summary.py
(episodes.jsonl measured); this module only renders. report.csv is the pandas DataFrame
`report_frame(summary)` (REPORT_COLUMNS) as CSV text, written atomically; its
consistent_with_reported is the report table's Holm-adjusted "consistent" column.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mibot_eval.results.measure.latency import latency_summary
from mibot_eval.results.measure.release_compare import LEVEL, release_rows
from mibot_eval.results.measure.reported import ReportedRow, adjusted_note, compare_to_reported
from mibot_eval.results.measure.suites import SuiteStats, rate_estimate
from mibot_eval.results.measure.summary import RunSummary, estimate_cells, execution_label, load_run
from mibot_eval.results.numbers import fmt, fmt_ci
from mibot_eval.results.stats.bootstrap import bootstrap_means, percentile_interval
from mibot_eval.results.stats.intervals import RATE_METHOD
from mibot_eval.results.store import write_atomic
from mibot_eval.results.views.latency import latency_markdown
from mibot_eval.results.views.tables import csv_text, markdown_table

REPORT_COLUMNS = (
    "run", "checkpoint", "checkpoint_id", "scope", "suite", "task", "name", "metric", "value",
    "ci_low", "ci_high", "method", "n", "successes", "episodes", "errors", "coverage", "partial",
    "reported", "delta", "consistent_with_reported",
)


def _coverage(suite: SuiteStats) -> str:
    return "–" if suite.coverage is None else f"{100 * suite.coverage:.1f}%"


def render_markdown(summary: RunSummary) -> str:
    m = summary.manifest
    lines = [f"# Report: {summary.run}", "",
             f"- checkpoint: **{summary.checkpoint}** (`{summary.checkpoint_id[:16] or '?'}`)",
             f"- execution: {execution_label(summary.execution)}",
             f"- git commit: {m.get('git_commit') or '?'}; created {m.get('created_at') or '?'}"]
    runtime = runtime_note(m.get("policy") or {})
    if runtime:
        lines.append(f"- policy runtime: {runtime}")
    partial = [s for s in summary.suites.values() if s.partial]
    lines.append(f"- status: **PARTIAL** ({', '.join(s.name for s in partial)})" if partial
                 else "- status: complete")
    lines += [f"- **warning**: {w}" for w in summary.warnings]
    lines += ["", "## Suites", "", f"Success rates over independent trials with {RATE_METHOD} 95% "
              "intervals; an episode that ended with an error counts as a failure, as the release counts "
              "it, and is also listed under Errors (chained suites such as CALVIN: share of sequences that"
              " completed every subtask).", ""]
    lines += markdown_table(
        ("suite", "success %", f"95% CI ({RATE_METHOD})", "successes / n", "episodes", "errors",
         "coverage", "status"),
        [(s.name, fmt(s.rate.value), fmt_ci(*(s.rate.interval() or (None, None))),
          f"{s.rate.successes:g} / {s.rate.n}", s.episodes, s.errors, _coverage(s), s.status)
         for s in summary.suites.values()])
    if summary.aggregates:
        lines += ["", "## Aggregates", ""]
        lines += markdown_table(("aggregate", "metric", "value", "95% CI", "method", "n", "note"),
                        [(e.key, e.metric, fmt(e.value, e.metric), fmt_ci(e.low, e.high, e.metric),
                          e.method, e.n, ("partial; " if e.partial else "") + e.note)
                         for e in summary.aggregates])
    lines += ["", f"## Comparison with reported ({summary.reported_source or summary.checkpoint})", ""]
    reported_rows = compare_to_reported(summary)
    if reported_rows:
        lines += [
            "A reported number is itself measured on a finite run: where the release's logs hold it "
            "(mibot_eval/data/release), the difference is tested two-sample against the release's "
            "episodes (release n); otherwise the reported figure is taken as exact. Difference: measured"
            " - reported, 95% interval (method per row); consistent: "
            f"{adjusted_note(reported_rows)} does not reject.", ""]
        lines += markdown_table(
            ("key", "metric", "reported", "release n", "measured", "n", "delta", "95% CI of delta",
             "CI method", "test", "p (Holm)", "consistent", "status"),
            [_reported_cells(summary, r) for r in reported_rows])
    else:
        lines.append("No reported numbers for this checkpoint and these suites.")
    lines += release_section(summary)
    lines += _task_sections(summary)
    lines += _error_section(summary)
    lines += _motion_section(summary)
    lines += ["", latency_markdown(latency_summary(summary.records)).rstrip()]
    lines += ["", "## Timing (seconds per episode)", ""]
    lines += markdown_table(("suite", "episodes", "total", "reset", "infer", "sim", "render", "hours"),
                    [(s.name, s.episodes + s.errors,
                      *(_seconds(s.timings.get(k)) for k in ("total_s", "reset_s", "infer_s",
                                                             "sim_s", "render_s")),
                      f"{s.timings.get('total_s', 0) * (s.episodes + s.errors) / 3600:.2f}")
                     for s in summary.suites.values()])
    return "\n".join(lines) + "\n"


def release_section(summary: RunSummary) -> list[str]:
    """Report lines: the task-by-task comparison with the release (none when it logged nothing)."""
    rows = release_rows(summary)
    if not rows:
        return []
    tested = sum(1 for r in rows if r.p_adjusted is not None)
    lines = ["", "## Comparison with the release's own episodes", "",
             "The release's evaluation logs (mibot_eval/data/release), task by task: difference (run - "
             "release) with a 95% interval (method per row) and the two-sided test of no difference "
             "(exact unconditional for rates, MOVER inverted for CALVIN's average length); **differs** "
             f"when its p-value, Holm-adjusted over the {tested} rows, is below {LEVEL:g}. SimplerEnv "
             "episodes are paired by their index in the official list.", ""]
    lines += markdown_table(
        ("suite", "task / metric", "run", "release", "diff", "95% CI", "CI method", "p (Holm)", "",
         "episode agreement"),
        [(r.suite, r.item, r.run, r.release, fmt(r.diff, r.metric),
          "–" if r.low is None else f"[{fmt(r.low, r.metric)}, {fmt(r.high, r.metric)}]", r.method,
          "–" if r.p_adjusted is None else ("<0.0001" if r.p_adjusted < 1e-4 else f"{r.p_adjusted:.4f}"),
          "**differs**" if r.differs else "", r.agreement) for r in rows])
    return lines


def runtime_note(policy: Mapping[str, Any]) -> str:
    """Device, dtype and attention kernel, flagged when not the release's (bf16 + flash_attention_2)."""
    server = policy.get("server") if isinstance(policy.get("server"), dict) else None
    policy = server or policy
    if not policy.get("device"):
        return ""
    text = f"{policy.get('device')}, {policy.get('dtype')}, {policy.get('attn_implementation')}"
    if policy.get("release_attention") is False:
        text += " (**not the release's attention kernel**: install flash-attn for flash_attention_2)"
    elif policy.get("release_attention") is None:
        text += " (CPU: not the release's bf16 + flash_attention_2 runtime)"
    return text


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _reported_cells(summary: RunSummary, row: ReportedRow) -> tuple[Any, ...]:
    c, d = row.comparison, row.difference
    measured = c.measured
    release_n = "–" if d is None else (str(row.reference.n) if row.reference is not None
                                       else "unknown (figure taken as exact)")
    return (c.key, c.metric, fmt(c.reported, c.metric), release_n,
            fmt(measured and measured.value, c.metric), "–" if measured is None else measured.n,
            fmt(c.delta, c.metric) if c.delta is not None else "–",
            "–" if d is None else fmt_ci(d.low, d.high, c.metric), "–" if d is None else d.interval,
            "–" if d is None else d.test,
            _p(row.p_adjusted),
            {True: "yes", False: "**no**", None: "–"}[row.consistent], _comparison_status(summary, row))


def _p(value: float | None) -> str:
    return "–" if value is None else ("<0.0001" if value < 1e-4 else f"{value:.4f}")


def _comparison_status(summary: RunSummary, row: ReportedRow) -> str:
    c = row.comparison
    if c.measured is None or c.measured.value is None:
        return "not measured" + (f" ({c.measured.note})" if c.measured and c.measured.note else "")
    suite = summary.suites.get(c.key)
    if suite is not None and suite.partial:
        return suite.status
    return "partial" if c.measured.partial else "complete"


def _task_sections(summary: RunSummary) -> list[str]:
    lines = ["", "## Tasks"]
    for suite in summary.suites.values():
        kind = "subtask success among attempts" if suite.chain is not None else "task success"
        lines += ["", f"### {suite.name} ({kind})", ""]
        rows = []
        for task in suite.tasks.values():
            rate = task.rate
            notes = []
            if task.episodes != rate.n:
                notes.append(f"{task.episodes} episodes = {rate.n} independent trials")
            if task.inconsistent_repeats:
                notes.append(f"{task.inconsistent_repeats} repeat groups disagree")
            note = "; ".join(notes)
            rows.append((task.key, task.name, fmt(rate.value), fmt_ci(*(rate.interval() or (None, None))),
                         f"{rate.successes:g} / {rate.n}", task.errors, note))
        lines += markdown_table(("task", "name", "success %", f"95% CI ({RATE_METHOD})", "successes / n",
                                 "errors", "note"), rows)
    return lines


MOTION_ROWS = (  # (metric in metrics.motion, label)
    ("time_to_success_s", "time to success (s, successful episodes)"),
    ("seam_jump_l2", "seam jump |a_t - a_{t-1}| at chunk switches"),
    ("plan_vs_executed_l2", "new plan vs executed over its elapsed steps"),
    ("inside_jump_l2", "jump between actions inside a chunk"),
    ("seam_vs_old_chunk_l2", "first new action vs the replaced chunk's"),
    ("jerk_seam_l2", "jerk across seams (third difference)"),
    ("jerk_inside_l2", "jerk inside chunks"),
    ("idle_fraction", "idle (hold) fraction of steps"),
    ("gripper_toggles", "gripper toggles per episode"),
)


def _motion_section(summary: RunSummary) -> list[str]:
    """Per suite: mean motion metrics (mibot_eval/run/motion.py), 95% bootstrap intervals over episodes."""
    rows = []
    for suite in summary.suites:
        records = [r for r in summary.records if r.get("suite") == suite and r.get("status", "ok") == "ok"]
        for name, label in MOTION_ROWS:
            values = [float(v) for r in records
                      if (v := ((r.get("metrics") or {}).get("motion") or {}).get(name)) is not None]
            if not values:
                continue
            interval = "– (n < 2)"
            if len(values) >= 2:
                low, high = percentile_interval(bootstrap_means([values])[:, 0])
                interval = f"[{low:.4g}, {high:.4g}]"
            rows.append((suite, label, f"{np.mean(values):.4g}", interval, len(values)))
    if not rows:
        return []
    return ["", "## How the robot moved", "",
            "Means over episodes (action units per control step; mibot_eval/run/motion.py), 95% percentile "
            "bootstrap intervals over episodes (seeded; none for fewer than 2 episodes).", "",
            *markdown_table(("suite", "metric", "mean", "95% CI (bootstrap)", "episodes"), rows)]


def _error_section(summary: RunSummary) -> list[str]:
    total = sum(s.errors for s in summary.suites.values())
    lines = ["", "## Errors", "",
             f"{total} episode(s) ended with an error (after one retry); each counts as a failure in the "
             "rates above, as in the release's clients."]
    for suite in summary.suites.values():
        for key, error in suite.error_samples[:10]:
            lines.append(f"- `{key}`: {error.splitlines()[0] if error else '?'}")
    return lines


def csv_rows(summary: RunSummary) -> list[dict[str, Any]]:
    """Long-form rows of report.csv (REPORT_COLUMNS): tasks, suites and aggregates."""
    base = {"run": summary.run, "checkpoint": summary.checkpoint,
            "checkpoint_id": summary.checkpoint_id}
    consistent = {(r.comparison.key, r.comparison.metric): r.consistent for r in compare_to_reported(summary)}
    rows = []
    for suite in summary.suites.values():
        reported = summary.reported.get(suite.name, {})
        for task in suite.tasks.values():
            rows.append({**base, "scope": "task", "suite": suite.name, "task": task.key,
                         "name": task.name, "episodes": task.episodes, "errors": task.errors,
                         **estimate_cells(rate_estimate(suite.name, "success", task.rate),
                                          reported.get(task.name),
                                          consistent=consistent.get((suite.name, task.name))),
                         "partial": suite.partial})
        rows.append({**base, "scope": "suite", "suite": suite.name, "name": suite.name,
                     "episodes": suite.episodes, "errors": suite.errors,
                     "coverage": None if suite.coverage is None else round(100 * suite.coverage, 2),
                     **estimate_cells(rate_estimate(suite.name, "success", suite.rate),
                                      reported.get("success"),
                                      consistent=consistent.get((suite.name, "success"))),
                     "partial": suite.partial})
    for e in summary.aggregates:
        rows.append({**base, "scope": "aggregate", "suite": e.key, "name": e.key, "partial": e.partial,
                     **estimate_cells(e, summary.reported.get(e.key, {}).get(e.metric),
                                      consistent=consistent.get((e.key, e.metric)))})
    return rows


def report_frame(summary: RunSummary) -> pd.DataFrame:
    """report.csv as a table: csv_rows with REPORT_COLUMNS (object cells, None where empty)."""
    rows = [{c: row.get(c) for c in REPORT_COLUMNS} for row in csv_rows(summary)]
    return pd.DataFrame(rows, columns=list(REPORT_COLUMNS), dtype=object)


def report_run(run_dir: Path, compare_with: str | None = None) -> str:
    """Markdown report of a run; writes report.md and report.csv beside it.

    compare_with: take the reported numbers from this checkpoints.yaml entry (e.g. a fine-tune
    against the released LIBERO numbers)."""
    run_dir = Path(run_dir)
    summary = load_run(run_dir, compare_with=compare_with)
    text = render_markdown(summary)
    write_atomic(run_dir / "report.md", text.encode("utf-8"))
    write_atomic(run_dir / "report.csv", csv_text(report_frame(summary)).encode("utf-8"))
    return text
