"""Leaderboard: one row per (checkpoint, suite, protocol), rebuilt from recorded episodes.

`mibot-eval leaderboard [RESULTS_DIR] -o results/leaderboard.csv [--markdown P] [--png P]
[--pivot-png P] [--html D]` reads every `RESULTS_DIR/*/episodes.jsonl` (never printed summaries).
Runs of the same checkpoint (name and content hash), suite, protocol hash and execution settings are
pooled into one row (an episode recorded twice keeps its ok record, then its latest). Aggregates over
several suites (rule mean_of_suites, e.g. libero.average) get rows of kind `aggregate`, computed from
the pooled member suites for each run that recorded every member suite. `update_for_run` updates the
rows of one run in place (idempotent: the same rows as a full rebuild, never duplicated).

Every table is a pandas DataFrame: the long table (`leaderboard_frame`, written as the CSV), the pivot
(`build_pivot`) and the published figures of other models (results/published.py); CSVs are the
frames' `to_csv` text, written atomically.

Files (beside the long CSV, `<stem>` its name without .csv):
  <stem>.csv        the long table below, one row per (checkpoint, suite, protocol, execution)
  <stem>_pivot.csv  the pivot: one row per (checkpoint, checkpoint_id, execution), one group of
                    columns per benchmark headline (published.HEADLINES: libero_average,
                    calvin_abc_d_avg_len, calvin_abcd_d_avg_len, simpler_google_vm_average,
                    simpler_google_va_average, simpler_widowx_average): H (value), H_ci_low,
                    H_ci_high, H_partial; all empty when not measured. Only rows whose protocol is
                    today's suite YAML's (aggregates: of every member) enter the pivot; rows with
                    other protocols (e.g. --max-steps overrides) stay in the long table, and the
                    markdown says how many.
  published.csv     figures reported by others (PUBLISHED_COLUMNS of results/published.py: model,
                    suite, metric, headline, value, source, url, protocol, detail), written by the
                    `leaderboard` command (rebuild); never mixed with the measured rows.
The markdown (printed, and --markdown) is the long table, then "## Pivot", then "## Reported by
others"; the HTML page has them as table#leaderboard, table#pivot and table#published.

Long CSV columns, in this order (LEADERBOARD_COLUMNS); empty cell = not applicable / unknown:
  checkpoint       checkpoint name
  checkpoint_id    checkpoint content hash
  suite            suite name, or the aggregate key for kind=aggregate (e.g. libero)
  kind             suite | aggregate
  protocol         suite protocol hash; aggregate: hash over "suite=hash" of its members
  execution        execution mode and parameters, e.g. sync,replan_steps=10
  metric           headline metric: success (rate of the suite), average (a suite with a
                   mean_of_tasks / mean_of_task_groups rule, SimplerEnv), avg_len (a suite with a
                   chain_success rule, CALVIN), or the aggregate's metric
  value            the headline value: percent; avg_len in subtasks
  ci_low, ci_high  95% interval (never zero width; coverage in benchmarks/gate_calibration.py)
  method           its method: Clopper-Pearson (rates), MOVER (Clopper-Pearson terms) (averages of
                   rates), Clopper-Pearson on avg_len / length (bounded mean) (CALVIN avg_len)
  n                independent trials (CALVIN sequences; WidowX repeats collapsed to one)
  successes        successes among n (rates only; fractional if repeats disagree)
  episodes         ok episode records (repeats included)
  errors           episodes that ended in an error (each also a failure in the rates, as in the release)
  expected         episodes of the full protocol, episodes_per_task x num_tasks (aggregate: sum)
  coverage         100 x episodes / expected
  partial          true when coverage < 100 (aggregate: a member partial or missing)
  reported         the release's number for this checkpoint, suite and metric (checkpoints.yaml)
  delta            value - reported
  consistent_with_reported
                   true when the two-sided test of value - reported does not reject at 0.05 (this
                   row alone): two-sample against the release's logged episodes where they hold the
                   number (results/reported.py), else against the reported figure taken as exact
  details          secondary metrics, "name=value;..." (chain_1..chain_5; pooled success)
  sec_per_episode  mean wall-clock seconds per recorded episode (timings.total_s)
  runs             the run folders pooled into the row, ";"-separated
Motion (mibot_eval/run/motion.py, each record's metrics.motion): the mean over the row's ok episodes
that have the value (aggregate: over its member suites' episodes), empty when none has it; 4 decimals:
  time_to_success_s     seconds until success (successful episodes only record it)
  seam_jump_l2          mean |a_t - a_{t-1}| at chunk seams
  inside_jump_l2        mean |a_t - a_{t-1}| between consecutive actions of one chunk
  seam_vs_old_chunk_l2  mean |first new action - what the replaced chunk would have executed|
  plan_vs_executed_l2   mean |planned action - executed action| over steps the plan covers
  jerk_seam_l2          mean third-difference norm over windows that cross a seam
  jerk_inside_l2        mean third-difference norm inside one chunk
  idle_fraction         hold (idle) steps / steps
  gripper_toggles       sign changes of the gripper command per episode

Cells: booleans true/false, None empty, estimates (value, ci_low, ci_high, delta) rounded once when
written: 2 decimals, avg_len 3.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mibot_eval.config import load_checkpoints, load_suite, suites_dir
from mibot_eval.errors import UserError
from mibot_eval.results.lock import waiting_lock
from mibot_eval.results.published import HEADLINES, Headline, published_frame
from mibot_eval.results.reported import consistent_with
from mibot_eval.results.stats import (
    AggregateRule,
    Estimate,
    SuiteStats,
    measure_aggregate,
    measure_suite,
    rate_estimate,
)
from mibot_eval.results.store import EPISODES_FILE, MANIFEST_FILE, RunStore, write_atomic
from mibot_eval.results.summary import (
    ESTIMATE_COLUMNS,
    csv_digits,
    csv_text,
    dedupe,
    estimate_cells,
    execution_label,
    fmt,
    fmt_ci,
    full_count,
    load_aggregates,
    markdown_table,
    suite_of,
)

MOTION_COLUMNS = ("time_to_success_s", "seam_jump_l2", "inside_jump_l2", "seam_vs_old_chunk_l2",
                  "plan_vs_executed_l2", "jerk_seam_l2", "jerk_inside_l2", "idle_fraction", "gripper_toggles")
MOTION_DIGITS = 4
LEADERBOARD_COLUMNS = (
    "checkpoint", "checkpoint_id", "suite", "kind", "protocol", "execution", "metric", "value",
    "ci_low", "ci_high", "method", "n", "successes", "episodes", "errors", "expected", "coverage",
    "partial", "reported", "delta", "consistent_with_reported", "details", "sec_per_episode", "runs",
    *MOTION_COLUMNS,
)
KEY_COLUMNS = ("checkpoint", "checkpoint_id", "suite", "kind", "protocol", "execution")
SORT_COLUMNS = ("checkpoint", "kind", "suite", "protocol", "execution", "checkpoint_id")
PIVOT_INDEX = ("checkpoint", "checkpoint_id", "execution")
PIVOT_FIELDS = ("", "_ci_low", "_ci_high", "_partial")  # suffixes of each headline's columns
PIVOT_COLUMNS = (*PIVOT_INDEX, *(f"{h.column}{s}" for h in HEADLINES for s in PIVOT_FIELDS))
PUBLISHED_FILE = "published.csv"

GroupKey = tuple[str, str, str, str, str]  # checkpoint, checkpoint_id, suite, protocol, execution


@dataclass
class Group:
    """Pooled episodes of one (checkpoint, suite, protocol, execution)."""

    key: GroupKey
    records: list[dict[str, Any]] = field(default_factory=list)
    protocol: dict[str, Any] = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)


@dataclass
class Pool:
    groups: dict[GroupKey, Group] = field(default_factory=dict)
    run_members: dict[str, dict[str, GroupKey]] = field(default_factory=dict)  # run -> suite -> key


def run_dirs(results_dir: Path) -> list[Path]:
    """Run folders directly under results_dir (those with episodes.jsonl or manifest.json)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"{results_dir}: results folder not found")
    return sorted(p for p in results_dir.iterdir()
                  if p.is_dir() and ((p / EPISODES_FILE).is_file() or (p / MANIFEST_FILE).is_file()))


def collect(dirs: Iterable[Path]) -> Pool:
    """Group the episodes of several runs by (checkpoint, checkpoint_id, suite, protocol, execution)."""
    pool = Pool()
    for run_dir in dirs:
        store = RunStore(run_dir)
        manifest = store.read_manifest() or {}
        ckpt = manifest.get("checkpoint") or {}
        suites = manifest.get("suites") or {}
        members = pool.run_members.setdefault(str(run_dir.name), {})
        for record in store.records():
            suite = suite_of(record)
            entry = suites.get(suite) or {}
            key = (str(record.get("checkpoint") or ckpt.get("name") or "?"),
                   str(record.get("checkpoint_id") or ckpt.get("hash") or ""), suite,
                   str(record.get("protocol_hash") or entry.get("hash") or ""),
                   execution_label(record.get("execution") or manifest.get("execution") or {}))
            group = pool.groups.setdefault(key, Group(key))
            group.records.append(record)
            group.runs.add(run_dir.name)
            group.protocol = group.protocol or dict(entry.get("protocol") or {})
            members.setdefault(suite, key)
    for group in pool.groups.values():
        group.records = dedupe(group.records)
    return pool


def episode_frame(pool: Pool) -> pd.DataFrame:
    """One row per ok episode record of the pool: its group's position in pool.groups (column
    `group`) and its metrics.motion values (MOTION_COLUMNS, NaN where absent or not a number)."""
    rows = [{"group": index, **{c: motion.get(c) for c in MOTION_COLUMNS}}
            for index, group in enumerate(pool.groups.values()) for record in group.records
            if record.get("status", "ok") != "error"
            and isinstance(motion := (record.get("metrics") or {}).get("motion") or {}, Mapping)]
    frame = pd.DataFrame(rows, columns=["group", *MOTION_COLUMNS])
    for column in MOTION_COLUMNS:
        frame[column] = pd.to_numeric(frame[column].map(_number_or_nan), errors="coerce")
    return frame


def _number_or_nan(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return float("nan")
    return float(value)


class MotionSums:
    """Per-group sums and counts of the motion columns, so that any union of groups has its mean."""

    def __init__(self, pool: Pool) -> None:
        self.index = {key: i for i, key in enumerate(pool.groups)}
        frame = episode_frame(pool)
        grouped = frame.groupby("group")[list(MOTION_COLUMNS)]
        self.sums, self.counts = grouped.sum(), grouped.count()

    def means(self, keys: Iterable[GroupKey]) -> dict[str, float | None]:
        """Mean of each motion column over the episodes of these groups that have it (None: none)."""
        rows = [self.index[k] for k in keys if self.index.get(k) in self.sums.index]
        sums, counts = self.sums.loc[rows].sum(), self.counts.loc[rows].sum()
        return {c: float(sums[c]) / int(counts[c]) if int(counts[c]) else None for c in MOTION_COLUMNS}


def _suite_stats(group: Group, rules: Sequence[AggregateRule]) -> SuiteStats:
    chains = {r.suites[0]: r.length for r in rules if r.rule == "chain_success"}
    suite = group.key[2]
    return measure_suite(suite, group.records, full=full_count(group.protocol),
                         chain_length=chains.get(suite))


def build_rows(
    pool: Pool, rules: Sequence[AggregateRule] | None = None, only_runs: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Leaderboard rows (LEADERBOARD_COLUMNS) for every group, or only those of some runs."""
    rules = load_aggregates() if rules is None else rules
    reported = {name: info.reported for name, info in load_checkpoints().items()}
    runs = list(pool.run_members) if only_runs is None else list(only_runs)
    wanted = {k for r in runs for k in pool.run_members.get(r, {}).values()}
    motion = MotionSums(pool)
    stats = {k: _suite_stats(pool.groups[k], rules) for k in sorted(wanted)}
    rows = [{**_suite_row(pool.groups[k], stats[k], rules, reported.get(k[0], {})),
             **motion.means([k])} for k in sorted(wanted)]
    seen: set[tuple[str, ...]] = set()
    for run in runs:
        members = pool.run_members.get(run, {})
        for rule in rules:
            if rule.rule != "mean_of_suites" or not all(s in members for s in rule.suites):
                continue  # a run without every member suite has no aggregate row (see its report)
            row = _aggregate_row(rule, members, stats, pool, reported)
            ident = tuple(str(row[c]) for c in KEY_COLUMNS)
            if ident not in seen:
                seen.add(ident)
                rows.append({**row, **motion.means(members[s] for s in rule.suites)})
    return sort_rows(rows)


def _headline(suite: SuiteStats, rules: Sequence[AggregateRule]) -> tuple[Estimate, list[Estimate]]:
    """The suite's headline estimate and its secondary ones."""
    success = rate_estimate(suite.name, "success", suite.rate, suite.partial)
    own = [r for r in rules if r.rule != "mean_of_suites" and r.suites == (suite.name,)]
    estimates = [e for r in own for e in measure_aggregate(r, {suite.name: suite})]
    if not estimates:
        return success, []
    if suite.chain is not None:
        head = next((e for e in estimates if e.metric == "avg_len"), estimates[-1])
        return head, [e for e in estimates if e is not head]
    return estimates[0], [success, *estimates[1:]]


def _suite_row(
    group: Group, suite: SuiteStats, rules: Sequence[AggregateRule], reported: Mapping[str, Any]
) -> dict[str, Any]:
    checkpoint, checkpoint_id, name, protocol, execution = group.key
    head, others = _headline(suite, rules)
    row = {"checkpoint": checkpoint, "checkpoint_id": checkpoint_id, "suite": name, "kind": "suite",
           "protocol": protocol, "execution": execution, "episodes": suite.episodes,
           "errors": suite.errors, "expected": suite.full,
           "coverage": None if suite.coverage is None else round(100 * suite.coverage, 2),
           "partial": suite.partial,
           "details": ";".join(f"{e.metric}={fmt(e.value, e.metric)}" for e in others),
           "sec_per_episode": _round(suite.timings.get("total_s"), 3),
           "runs": ";".join(sorted(group.runs))}
    figure = (reported.get(name) or {}).get(head.metric)
    row.update(estimate_cells(head, figure, rounded=False,
                              consistent=consistent_with(head, checkpoint, name, head.metric, figure)))
    return row


def aggregate_protocol(suites: Sequence[str], hashes: Sequence[str]) -> str:
    """The protocol cell of an aggregate row: a hash over "suite=hash" of its members."""
    signature = "|".join(f"{s}={h}" for s, h in zip(suites, hashes, strict=True))
    return hashlib.sha256(signature.encode()).hexdigest()[:16]


def _aggregate_row(
    rule: AggregateRule, members: Mapping[str, GroupKey], stats: Mapping[GroupKey, SuiteStats],
    pool: Pool, reported: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    present = {s: members[s] for s in rule.suites}
    first = next(iter(present.values()))
    suites = {s: stats[k] for s, k in present.items()}
    estimate = measure_aggregate(rule, suites)[0]
    expected = [suites[s].full for s in present]
    episodes = sum(s.episodes for s in suites.values())
    total = sum(e for e in expected if e) if all(expected) else None
    row = {"checkpoint": first[0], "checkpoint_id": first[1], "suite": rule.key, "kind": "aggregate",
           "protocol": aggregate_protocol(rule.suites, [present[s][3] for s in rule.suites]),
           "execution": first[4],
           "episodes": episodes, "errors": sum(s.errors for s in suites.values()), "expected": total,
           "coverage": round(100 * episodes / total, 2) if total else None,
           "partial": estimate.partial, "details": estimate.note,
           "runs": ";".join(sorted({r for k in present.values() for r in pool.groups[k].runs}))}
    figure = (reported.get(first[0]) or {}).get(rule.key, {}).get(rule.name)
    row.update(estimate_cells(estimate, figure, rounded=False,
                              consistent=consistent_with(estimate, first[0], rule.key, rule.name, figure)))
    return row


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def sort_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows ordered by checkpoint, kind, suite, protocol, execution, checkpoint_id."""
    rows = [dict(r) for r in rows]
    if not rows:
        return []
    keys = pd.DataFrame({c: [str(r.get(c) or "") for r in rows] for c in SORT_COLUMNS})
    return [rows[i] for i in keys.sort_values(list(SORT_COLUMNS), kind="stable").index]


# -- tables ---------------------------------------------------------------------------------------
def leaderboard_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The long table: sorted rows with LEADERBOARD_COLUMNS (object cells, None where empty)."""
    ordered = [{c: _none_if_nan(r.get(c)) for c in LEADERBOARD_COLUMNS} for r in sort_rows(rows)]
    return pd.DataFrame(ordered, columns=list(LEADERBOARD_COLUMNS), dtype=object)


def _none_if_nan(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


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


# -- pivot ----------------------------------------------------------------------------------------
@dataclass
class Pivot:
    """The headline pivot (PIVOT_COLUMNS, numbers at full precision) and how many headline rows
    were left out because their protocol is not the suite YAML's."""

    frame: pd.DataFrame
    excluded: int = 0


def official_protocols(rules: Sequence[AggregateRule] | None = None) -> dict[str, str]:
    """Headline suite (or aggregate key) -> the protocol hash today's suite YAML(s) give."""
    rules = load_aggregates() if rules is None else rules
    out = {}
    for h in HEADLINES:
        rule = next((r for r in rules if r.key == h.suite and r.rule == "mean_of_suites"), None)
        members = [official_hash(s) for s in (rule.suites if rule else (h.suite,))]
        if any(m is None for m in members):
            continue
        out[h.suite] = aggregate_protocol(rule.suites, members) if rule else str(members[0])
    return out


def official_hash(suite: str) -> str | None:
    """The protocol hash of the suite's YAML (None when it does not load); cached while
    its suite YAML keeps its size and modification time."""
    path = suites_dir() / f"{suite}.yaml"
    try:
        stat = path.stat()
    except OSError:
        return _load_hash(suite)
    return _cached_hash(suite, str(path), stat.st_mtime_ns, stat.st_size)


def _load_hash(suite: str) -> str | None:
    try:
        return load_suite(suite).protocol_hash()
    except UserError:
        return None


@lru_cache(maxsize=64)
def _cached_hash(suite: str, path: str, mtime_ns: int, size: int) -> str | None:
    return _load_hash(suite)


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
        "column": cells["column"], "": cells["value"].map(_num), "_ci_low": cells["ci_low"].map(_num),
        "_ci_high": cells["ci_high"].map(_num), "_partial": cells["partial"].map(_truth),
    }, columns=[*PIVOT_INDEX, "column", *PIVOT_FIELDS])
    table = table.drop_duplicates([*PIVOT_INDEX, "column"]).set_index([*PIVOT_INDEX, "column"])
    wide = table.unstack("column")
    wide.columns = [f"{col}{field_}" for field_, col in wide.columns]
    wide = wide.reindex(columns=[c for c in PIVOT_COLUMNS if c not in PIVOT_INDEX]).reset_index()
    wide = wide.sort_values(["checkpoint", "execution", "checkpoint_id"], kind="stable")
    records = [{c: _none_if_nan(r.get(c)) for c in PIVOT_COLUMNS} for r in wide.to_dict("records")]
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


def _pivot_labels(frame: pd.DataFrame) -> list[str]:
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
                             for label, r in zip(_pivot_labels(frame), records, strict=True)])
    if pivot.excluded:
        lines += ["", f"{pivot.excluded} headline row(s) with a protocol other than the suite YAML's "
                  "(e.g. --max-steps) are in the long table only."]
    return "\n".join(lines) + "\n"


def pivot_png(pivot: Pivot) -> bytes:
    """The pivot as a colored grid: shade = value / scale (100 %, 5 subtasks), grey = partial."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    records = pivot.frame.to_dict("records")
    labels = [f"{c}\n{r['execution']}" for c, r in zip(_pivot_labels(pivot.frame), records, strict=True)]
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


# -- published figures of other models ------------------------------------------------------------
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


# -- files ----------------------------------------------------------------------------------------
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
        coverage = _num(r.get("coverage"))
        status = "–" if coverage is None else f"{coverage:.1f}%"
        if _truth(r.get("partial")):
            status += " (partial)"
        cells = (r.get("checkpoint"), r.get("suite"), metric, fmt(_num(r.get("value")), metric),
                 fmt_ci(_num(r.get("ci_low")), _num(r.get("ci_high")), metric), r.get("method") or "–",
                 r.get("n"), fmt(_num(r.get("reported")), metric), fmt(_num(r.get("delta")), metric),
                 {True: "yes", False: "no", None: "–"}[_bool_or_none(r.get("consistent_with_reported"))],
                 status, r.get("execution"), r.get("protocol"))
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    return float(value)


def _truth(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _bool_or_none(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    return _truth(value)


def chart_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Bar chart of the headline values with interval whiskers (percent metrics; avg_len apart)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    percent = [r for r in rows if r.get("metric") != "avg_len" and _num(r.get("value")) is not None]
    lengths = [r for r in rows if r.get("metric") == "avg_len" and _num(r.get("value")) is not None]
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
        values = [_num(r["value"]) or 0.0 for r in subset]
        lows = [v - (_num(r.get("ci_low")) if _num(r.get("ci_low")) is not None else v)
                for v, r in zip(values, subset, strict=True)]
        highs = [(_num(r.get("ci_high")) if _num(r.get("ci_high")) is not None else v) - v
                 for v, r in zip(values, subset, strict=True)]
        colors = ["#9aa5b1" if _truth(r.get("partial")) else "#2f6db5" for r in subset]
        positions = list(range(len(subset)))
        axes.bar(positions, values, color=colors, yerr=[lows, highs], capsize=3, ecolor="#222")
        reported = [(i, _num(r.get("reported"))) for i, r in enumerate(subset)
                    if _num(r.get("reported")) is not None]
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
