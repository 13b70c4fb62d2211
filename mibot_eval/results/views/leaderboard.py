"""The leaderboard's files and markdown (`mibot-eval leaderboard`, and every finished run's rows).

Files (beside the long CSV, `<stem>` its name without .csv):
  <stem>.csv        the long table (measure/leaderboard.py LeaderboardRow: its columns, in order),
                    one row per (checkpoint, suite, protocol, execution)
  <stem>_pivot.csv  the pivot of benchmark headlines (views/pivot.py)
  published.csv     figures reported by others (measure/published.py PUBLISHED_COLUMNS), written by
                    `rebuild`; never mixed with the measured rows.
The markdown (printed, and --markdown) is the long table, then "## Pivot", then "## Reported by
others"; the HTML page (views/html.py) has them as table#leaderboard, table#pivot and
table#published. Cells: booleans true/false, None empty, estimates (value, ci_low, ci_high, delta)
rounded once when written: 2 decimals, avg_len 3; motion means 4 decimals. CSVs are written
atomically. `update_for_run` updates the rows of one run in place (idempotent: the same rows as a
full rebuild, never duplicated), under a lock several finishing runs share."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mibot_eval.results.lock import waiting_lock
from mibot_eval.results.measure.leaderboard import (
    KEY_COLUMNS,
    MOTION_COLUMNS,
    build_rows,
    leaderboard_frame,
)
from mibot_eval.results.measure.pooling import collect, run_dirs
from mibot_eval.results.measure.published import published_frame
from mibot_eval.results.measure.summary import ESTIMATE_COLUMNS
from mibot_eval.results.numbers import csv_digits, fmt, fmt_ci
from mibot_eval.results.store import RunStore, write_atomic
from mibot_eval.results.views.charts import chart_png, pivot_png
from mibot_eval.results.views.pivot import Pivot, build_pivot, pivot_csv_frame, pivot_markdown
from mibot_eval.results.views.tables import bool_or_none, csv_text, markdown_table, number, truth

MOTION_DIGITS = 4


PUBLISHED_FILE = "published.csv"


def _csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's cells as written: estimates rounded once (csv_digits), motion means to 4 decimals."""
    digits = csv_digits(str(row.get("metric") or ""))
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and k in ESTIMATE_COLUMNS:
            v = round(v, digits)
        elif isinstance(v, float) and k in MOTION_COLUMNS:
            v = round(v, MOTION_DIGITS)
        out[k] = v
    return out


def published_markdown(published: pd.DataFrame) -> str:
    """The figures reported by others, as their own markdown section."""
    lines = ["## Reported by others (not measured here)", "",
             "Headlines other models' authors published for these benchmarks, copied from the cited "
             "source (mibot_eval/data/published/); never measured by this harness and never part of "
             "the tables above.", ""]
    if published.empty:
        return "\n".join([*lines, "No published figures are shipped."]) + "\n"
    lines += markdown_table(("model", "headline", "value", "protocol", "source"),
                            [(r["model"], r["headline"], f"{float(r['value']):g}",
                              r["protocol"], f"{r['source']} ({r['url']})")
                             for r in published.to_dict("records")])
    return "\n".join(lines) + "\n"


def read_csv(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        return []
    with Path(path).open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def pivot_path(csv_path: Path) -> Path:
    """<stem>_pivot.csv beside the long CSV."""
    return Path(csv_path).with_name(f"{Path(csv_path).stem}_pivot.csv")


def write_leaderboard(rows: Iterable[Mapping[str, Any]], path: Path) -> Pivot:
    """Write the long CSV and its pivot beside it, from one frame; rows are built at full precision
    (the markdown formats those) and the CSV cells are rounded here. Returns the pivot."""
    rows = list(rows)
    frame = leaderboard_frame(_csv_row(r) for r in rows)
    write_atomic(Path(path), csv_text(frame).encode("utf-8"))  # readers never see half a file
    pivot = build_pivot(leaderboard_frame(rows))
    write_atomic(pivot_path(path), csv_text(pivot_csv_frame(pivot)).encode("utf-8"))
    return pivot


def write_published(path: Path, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Write the figures reported by others (published.PUBLISHED_COLUMNS) to path."""
    published = published_frame() if published is None else published
    write_atomic(Path(path), csv_text(published).encode("utf-8"))
    return published


def upsert(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace the rows with the same key columns, keep all others (idempotent)."""
    new = {tuple(_key_cell(r.get(c)) for c in KEY_COLUMNS) for r in rows}
    kept = [{k: (v if v != "" else None) for k, v in r.items()} for r in read_csv(path)
            if tuple(r.get(c, "") for c in KEY_COLUMNS) not in new]
    write_leaderboard([*kept, *rows], path)


def _key_cell(value: Any) -> str:
    return "" if value is None else str(value)


def update_for_run(run_dir: Path, csv_path: Path) -> list[dict[str, Any]]:
    """Recompute the leaderboard rows the run contributes to (pooled with its sibling runs of the
    same checkpoint under run_dir's parent) and upsert them into csv_path."""
    run_dir = Path(run_dir)
    name = (RunStore(run_dir).read_manifest() or {}).get("checkpoint", {}).get("name")
    siblings = [d for d in run_dirs(run_dir.parent)
                if d == run_dir or name is None
                or (RunStore(d).read_manifest() or {}).get("checkpoint", {}).get("name") in (name, None)]
    if run_dir not in siblings:
        siblings.append(run_dir)
    rows = build_rows(collect(siblings), only_runs=[run_dir.name])
    with waiting_lock(csv_path.with_name(csv_path.name + ".lock")):  # runs finishing at once
        upsert(csv_path, rows)
    return rows


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of leaderboard rows (read back from CSV or freshly built)."""
    header = ("checkpoint", "suite", "metric", "value", "95% CI", "CI method", "n", "reported", "delta",
              "consistent", "coverage", "execution", "protocol")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        metric = str(r.get("metric") or "")
        coverage = number(r.get("coverage"))
        status = "–" if coverage is None else f"{coverage:.1f}%"
        if truth(r.get("partial")):
            status += " (partial)"
        cells = (r.get("checkpoint"), r.get("suite"), metric, fmt(number(r.get("value")), metric),
                 fmt_ci(number(r.get("ci_low")), number(r.get("ci_high")), metric), r.get("method") or "–",
                 r.get("n"), fmt(number(r.get("reported")), metric), fmt(number(r.get("delta")), metric),
                 {True: "yes", False: "no", None: "–"}[bool_or_none(r.get("consistent_with_reported"))],
                 status, r.get("execution"), r.get("protocol"))
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def rebuild(
    results_dir: Path, csv_path: Path | None = None, markdown_path: Path | None = None,
    png_path: Path | None = None, pivot_png_path: Path | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Rebuild the whole leaderboard from results_dir: the long CSV, its pivot CSV and published.csv
    beside it (and the markdown / PNGs when asked); returns (rows, markdown)."""
    results_dir = Path(results_dir)
    rows = build_rows(collect(run_dirs(results_dir)))
    csv_path = Path(csv_path) if csv_path is not None else results_dir / "leaderboard.csv"
    pivot = write_leaderboard(rows, csv_path)
    published = write_published(csv_path.with_name(PUBLISHED_FILE))
    markdown = full_markdown(rows, pivot, published)
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(markdown, encoding="utf-8")
    if png_path is not None:
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        Path(png_path).write_bytes(chart_png(rows))
    if pivot_png_path is not None:
        Path(pivot_png_path).parent.mkdir(parents=True, exist_ok=True)
        Path(pivot_png_path).write_bytes(pivot_png(pivot))
    return rows, markdown


def full_markdown(rows: Sequence[Mapping[str, Any]], pivot: Pivot | None = None,
                  published: pd.DataFrame | None = None) -> str:
    """The long table, then the pivot section, then the figures reported by others."""
    pivot = build_pivot(rows) if pivot is None else pivot
    published = published_frame() if published is None else published
    return "\n".join((to_markdown(rows), pivot_markdown(pivot), published_markdown(published)))
