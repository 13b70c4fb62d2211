"""The leaderboard's pivot: one row per (checkpoint, checkpoint_id, execution), one group of columns
per benchmark headline (measure/published.py HEADLINES): H (value), H_ci_low, H_ci_high, H_partial;
all empty when not measured. Only rows whose protocol is today's suite YAML's
(measure/leaderboard.official_protocols) enter it; the others stay in the long table and the
markdown says how many. Written as <stem>_pivot.csv beside the long CSV."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mibot_eval.results.measure.leaderboard import leaderboard_frame, official_protocols
from mibot_eval.results.measure.published import HEADLINES, Headline
from mibot_eval.results.numbers import csv_digits, fmt, fmt_ci, none_if_nan
from mibot_eval.results.views.tables import markdown_table, number, truth

PIVOT_INDEX = ("checkpoint", "checkpoint_id", "execution")


PIVOT_FIELDS = ("", "_ci_low", "_ci_high", "_partial")  # suffixes of each headline's columns


PIVOT_COLUMNS = (*PIVOT_INDEX, *(f"{h.column}{s}" for h in HEADLINES for s in PIVOT_FIELDS))


@dataclass
class Pivot:
    """The headline pivot (PIVOT_COLUMNS, numbers at full precision) and how many headline rows
    were left out because their protocol is not the suite YAML's."""

    frame: pd.DataFrame
    excluded: int = 0


def build_pivot(rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
                official: Mapping[str, str] | None = None) -> Pivot:
    """One row per (checkpoint, checkpoint_id, execution), one group of columns per headline (value,
    ci_low, ci_high, partial; None when not measured), from rows built here or read from a CSV."""
    frame = rows if isinstance(rows, pd.DataFrame) else leaderboard_frame(rows)
    official = official_protocols() if official is None else official
    columns = {(h.suite, h.metric): h.column for h in HEADLINES}
    column = [columns.get((str(s), str(m))) for s, m in zip(frame["suite"], frame["metric"], strict=True)]
    cells = frame.assign(column=column)
    cells = cells[cells["column"].notna()]
    is_official = np.array([official.get(str(s)) == str(p) for s, p in
                            zip(cells["suite"], cells["protocol"], strict=True)], dtype=bool)
    excluded = int(len(cells) - is_official.sum())
    cells = cells.loc[is_official]
    table = pd.DataFrame({
        **{c: cells[c].map(lambda v: "" if v is None else str(v)) for c in PIVOT_INDEX},
        "column": cells["column"], "": cells["value"].map(number), "_ci_low": cells["ci_low"].map(number),
        "_ci_high": cells["ci_high"].map(number), "_partial": cells["partial"].map(truth),
    }, columns=[*PIVOT_INDEX, "column", *PIVOT_FIELDS])
    table = table.drop_duplicates([*PIVOT_INDEX, "column"]).set_index([*PIVOT_INDEX, "column"])
    wide = table.unstack("column")
    wide.columns = [f"{col}{field_}" for field_, col in wide.columns]
    wide = wide.reindex(columns=[c for c in PIVOT_COLUMNS if c not in PIVOT_INDEX]).reset_index()
    wide = wide.sort_values(["checkpoint", "execution", "checkpoint_id"], kind="stable")
    records = [{c: none_if_nan(r.get(c)) for c in PIVOT_COLUMNS} for r in wide.to_dict("records")]
    return Pivot(pd.DataFrame(records, columns=list(PIVOT_COLUMNS), dtype=object), excluded)


def pivot_csv_frame(pivot: Pivot) -> pd.DataFrame:
    """The pivot as written: values and intervals rounded once (2 decimals, avg_len 3)."""
    frame = pivot.frame.copy()
    for h in HEADLINES:
        digits = csv_digits(h.metric)
        for suffix in ("", "_ci_low", "_ci_high"):
            column = h.column + suffix
            frame[column] = pd.Series([None if v is None else round(float(v), digits) for v in frame[column]],
                                      index=frame.index, dtype=object)
    return frame


def pivot_cell(row: Mapping[str, Any], h: Headline) -> str:
    """'98.7 [98.2, 99.2]', '... (partial)', or '' when not measured."""
    value, partial = row.get(h.column), row.get(h.column + "_partial")
    if value is None and partial is None:
        return ""
    interval = fmt_ci(row.get(h.column + "_ci_low"), row.get(h.column + "_ci_high"), h.metric)
    text = "–" if value is None else f"{fmt(value, h.metric)} {interval}"
    return text + " (partial)" if partial else text


def pivot_labels(frame: pd.DataFrame) -> list[str]:
    """Checkpoint names, with a short content hash where one name has several."""
    ids = frame.groupby("checkpoint")["checkpoint_id"].nunique().to_dict()
    return [f"{c} ({i[:8]})" if ids.get(c, 1) > 1 else str(c)
            for c, i in zip(frame["checkpoint"], frame["checkpoint_id"], strict=True)]


def pivot_markdown(pivot: Pivot) -> str:
    """The pivot as a markdown section."""
    frame = pivot.frame
    lines = ["## Pivot: benchmark headlines", "",
             "One row per checkpoint and execution mode: value [95% CI], **(partial)** when the run "
             "covers less than the protocol; empty when not measured. Official protocols only. "
             "Intervals: MOVER over Clopper-Pearson terms for averages, Clopper-Pearson on avg_len / 5 "
             "for CALVIN's average length.", ""]
    records = frame.to_dict("records")
    lines += markdown_table(("checkpoint", "execution", *(h.label for h in HEADLINES)),
                            [(label, r["execution"], *(pivot_cell(r, h) for h in HEADLINES))
                             for label, r in zip(pivot_labels(frame), records, strict=True)])
    if pivot.excluded:
        lines += ["", f"{pivot.excluded} headline row(s) with a protocol other than the suite YAML's "
                  "(e.g. --max-steps) are in the long table only."]
    return "\n".join(lines) + "\n"
