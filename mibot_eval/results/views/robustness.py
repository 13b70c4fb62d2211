"""The LIBERO-PRO robustness report as markdown and CSV (`mibot-eval robustness`): per variant suite
and task, the variant's success, the clean suite's and the drop with their intervals
(measure/robustness.py compares; this only renders and writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mibot_eval.results.measure.robustness import Comparison, RobustnessReport
from mibot_eval.results.numbers import fmt, fmt_ci
from mibot_eval.results.stats.rates import Rate
from mibot_eval.results.views.tables import markdown_table, write_csv


def _rate_cells(rate: Rate) -> list[str]:
    interval = rate.interval()
    count = f"{rate.successes:g}/{rate.n}"
    return [fmt(rate.value), fmt_ci(*interval) if interval else "–", count]


def _drop_cells(row: Comparison) -> list[str]:
    d = row.drop()
    return ["–", "–"] if d is None else [fmt(d[0]), fmt_ci(d[1], d[2])]


def _pair_cell(row: Comparison) -> str:
    if row.pairs is None:
        return row.pairing
    return f"{row.pairing}; {row.pairs} pairs, clean-only {row.clean_only}, variant-only {row.variant_only}"


EXPLANATION = (
    "Success in percent with a Clopper-Pearson 95% interval; drop = clean - variant in percentage points "
    "with a Newcombe 95% interval (unpaired); **worse** when that interval lies above 0. LIBERO-PRO's "
    "variants "
    "start from their own init states, so trial i is not the clean trial i: unpaired. `*_paired` suites "
    "(non-upstream) reuse the clean init states; their matched pairs are counted, the interval is still "
    "the unpaired one (no paired test has landed)."
)


def render_markdown(report: RobustnessReport) -> str:
    lines = [f"# Robustness of {report.checkpoint} under LIBERO-PRO perturbations", ""]
    lines.append(f"clean: {', '.join(str(p) for p in report.clean_runs)}; "
                 f"variants: {', '.join(str(p) for p in report.variant_runs)}")
    lines += ["", EXPLANATION, ""]
    header = ["variant", "family", "base", "variant %", "95% CI", "k/n", "clean %", "95% CI", "k/n",
              "drop (pp)", "95% CI", "worse", "pairing", "notes"]
    suites = [r for r in report.rows if r.scope == "suite"]
    lines += ["## Suites", ""]
    lines += markdown_table(header, [[r.variant, r.family, r.base_suite, *_rate_cells(r.variant_rate),
                                      *_rate_cells(r.clean_rate), *_drop_cells(r), r.verdict, _pair_cell(r),
                                      "; ".join(r.notes) or "–"] for r in suites])
    tasks = [r for r in report.rows if r.scope == "task"]
    lines += ["", "## Tasks", ""]
    lines += markdown_table(
        ["variant", "task", "base task", "name", "variant %", "95% CI", "k/n", "clean %", "95% CI", "k/n",
         "drop (pp)", "95% CI", "worse"],
        [[r.variant, r.task, r.base_task, r.task_name, *_rate_cells(r.variant_rate),
          *_rate_cells(r.clean_rate), *_drop_cells(r), r.verdict] for r in tasks])
    unmatched = [f"{r.variant} task {r.task}: {'; '.join(r.notes)}" for r in tasks if not r.clean_rate.n]
    if report.missing or unmatched:
        lines += ["", "## Not compared", "", *[f"- {m}" for m in [*report.missing, *unmatched]]]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ("variant", "family", "base_suite", "scope", "task", "base_task", "task_name",
               "variant_successes", "variant_n", "variant_rate", "variant_low", "variant_high",
               "clean_successes", "clean_n", "clean_rate", "clean_low", "clean_high",
               "drop_pp", "drop_low", "drop_high", "worse", "pairing", "pairs", "clean_only", "variant_only",
               "notes")


def csv_rows(report: RobustnessReport) -> list[dict[str, Any]]:
    out = []
    for r in report.rows:
        row: dict[str, Any] = {"variant": r.variant, "family": r.family, "base_suite": r.base_suite,
                               "scope": r.scope, "task": r.task, "base_task": r.base_task,
                               "task_name": r.task_name, "pairing": r.pairing, "pairs": r.pairs,
                               "clean_only": r.clean_only, "variant_only": r.variant_only,
                               "notes": "; ".join(r.notes), "worse": r.verdict == "**worse**"}
        for side, rate in (("variant", r.variant_rate), ("clean", r.clean_rate)):
            interval = rate.interval() or (None, None)
            row.update({f"{side}_successes": rate.successes, f"{side}_n": rate.n,
                        f"{side}_rate": _round(rate.value), f"{side}_low": _round(interval[0]),
                        f"{side}_high": _round(interval[1])})
        d = r.drop() or (None, None, None)
        row.update(drop_pp=_round(d[0]), drop_low=_round(d[1]), drop_high=_round(d[2]))
        out.append(row)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def write_report(report: RobustnessReport, markdown_path: Path) -> tuple[str, Path, Path]:
    """Write the markdown and a CSV beside it (same name, .csv); returns (markdown, md, csv)."""
    text = render_markdown(report)
    markdown_path = Path(markdown_path)
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    markdown_path.write_text(text, encoding="utf-8")
    csv_path = markdown_path.with_suffix(".csv")
    write_csv(csv_path, CSV_COLUMNS, csv_rows(report))
    return text, markdown_path, csv_path
