"""Leaderboard: one row per (checkpoint, suite, protocol), rebuilt from recorded episodes.

`mibot-eval leaderboard [RESULTS_DIR] -o results/leaderboard.csv [--markdown P] [--png P] [--html D]`
reads every `RESULTS_DIR/*/episodes.jsonl` (never printed summaries). Runs of the same checkpoint
(name and content hash), suite, protocol hash and execution settings are pooled into one row
(an episode recorded twice keeps its ok record, then its latest). Aggregates over several suites
(rule mean_of_suites, e.g. libero.average) get rows of kind `aggregate`, computed from the pooled
member suites for each run that recorded every member suite. `update_for_run` updates the rows of
one run in place (idempotent: the same rows as a full rebuild, never duplicated).

CSV columns, in this order (LEADERBOARD_COLUMNS); empty cell = not applicable / unknown:
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
  ci_low, ci_high  95% interval: Wilson for rates, seeded bootstrap for averages and avg_len
  method           wilson | bootstrap
  n                independent trials (CALVIN sequences; WidowX repeats collapsed to one)
  successes        successes among n (rates only; fractional if repeats disagree)
  episodes         ok episode records (repeats included)
  errors           episodes that ended in an error (each also a failure in the rates, as in the release)
  expected         episodes of the full protocol, episodes_per_task x num_tasks (aggregate: sum)
  coverage         100 x episodes / expected
  partial          true when coverage < 100 (aggregate: a member partial or missing)
  reported         the release's number for this checkpoint, suite and metric (checkpoints.yaml)
  delta            value - reported
  reported_in_ci   true when the reported number lies inside [ci_low, ci_high]
  details          secondary metrics, "name=value;..." (chain_1..chain_5; pooled success)
  sec_per_episode  mean wall-clock seconds per recorded episode (timings.total_s)
  runs             the run folders pooled into the row, ";"-separated
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibot_eval.config import load_checkpoints
from mibot_eval.errors import UserError
from mibot_eval.results.stats import (
    AggregateRule,
    Estimate,
    SuiteStats,
    measure_aggregate,
    measure_suite,
    rate_estimate,
)
from mibot_eval.results.store import EPISODES_FILE, MANIFEST_FILE, RunStore
from mibot_eval.results.summary import (
    ESTIMATE_COLUMNS,
    csv_digits,
    dedupe,
    estimate_cells,
    execution_label,
    fmt,
    fmt_ci,
    full_count,
    load_aggregates,
    suite_of,
    write_csv,
)

LEADERBOARD_COLUMNS = (
    "checkpoint", "checkpoint_id", "suite", "kind", "protocol", "execution", "metric", "value",
    "ci_low", "ci_high", "method", "n", "successes", "episodes", "errors", "expected", "coverage",
    "partial", "reported", "delta", "reported_in_ci", "details", "sec_per_episode", "runs",
)
KEY_COLUMNS = ("checkpoint", "checkpoint_id", "suite", "kind", "protocol", "execution")

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
    stats = {k: _suite_stats(pool.groups[k], rules) for k in sorted(wanted)}
    rows = [_suite_row(pool.groups[k], stats[k], rules, reported.get(k[0], {})) for k in sorted(wanted)]
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
                rows.append(row)
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
    row.update(estimate_cells(head, (reported.get(name) or {}).get(head.metric), rounded=False))
    return row


def _aggregate_row(
    rule: AggregateRule, members: Mapping[str, GroupKey], stats: Mapping[GroupKey, SuiteStats],
    pool: Pool, reported: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    present = {s: members[s] for s in rule.suites}
    first = next(iter(present.values()))
    suites = {s: stats[k] for s, k in present.items()}
    estimate = measure_aggregate(rule, suites)[0]
    signature = "|".join(f"{s}={present[s][3]}" for s in rule.suites)
    expected = [suites[s].full for s in present]
    episodes = sum(s.episodes for s in suites.values())
    total = sum(e for e in expected if e) if all(expected) else None
    row = {"checkpoint": first[0], "checkpoint_id": first[1], "suite": rule.key, "kind": "aggregate",
           "protocol": hashlib.sha256(signature.encode()).hexdigest()[:16], "execution": first[4],
           "episodes": episodes, "errors": sum(s.errors for s in suites.values()), "expected": total,
           "coverage": round(100 * episodes / total, 2) if total else None,
           "partial": estimate.partial, "details": estimate.note,
           "runs": ";".join(sorted({r for k in present.values() for r in pool.groups[k].runs}))}
    row.update(estimate_cells(estimate, (reported.get(first[0]) or {}).get(rule.key, {}).get(rule.name),
                              rounded=False))
    return row


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def sort_rows(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return sorted((dict(r) for r in rows),
                  key=lambda r: tuple(str(r.get(c) or "") for c in ("checkpoint", "kind", "suite",
                                                                    "protocol", "execution",
                                                                    "checkpoint_id")))


# -- files ----------------------------------------------------------------------------------------
def read_csv(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        return []
    with Path(path).open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def write_leaderboard(rows: Iterable[Mapping[str, Any]], path: Path) -> None:
    """Rows are built at full precision (the markdown formats those); the CSV cells are rounded here."""
    write_csv(Path(path), LEADERBOARD_COLUMNS, [_csv_row(r) for r in sort_rows(rows)])


def _csv_row(row: Mapping[str, Any]) -> dict[str, Any]:
    digits = csv_digits(str(row.get("metric") or ""))
    return {k: round(v, digits) if k in ESTIMATE_COLUMNS and isinstance(v, float) else v
            for k, v in row.items()}


def upsert(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace the rows with the same key columns, keep all others (idempotent)."""
    new = {tuple(_key_cell(r.get(c)) for c in KEY_COLUMNS) for r in rows}
    kept = [r for r in read_csv(path) if tuple(r.get(c, "") for c in KEY_COLUMNS) not in new]
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
    upsert(csv_path, rows)
    return rows


def to_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table of leaderboard rows (read back from CSV or freshly built)."""
    header = ("checkpoint", "suite", "metric", "value", "95% CI", "n", "reported", "delta",
              "in CI", "coverage", "execution", "protocol")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        metric = str(r.get("metric") or "")
        coverage = _num(r.get("coverage"))
        status = "–" if coverage is None else f"{coverage:.1f}%"
        if _truth(r.get("partial")):
            status += " (partial)"
        cells = (r.get("checkpoint"), r.get("suite"), metric, fmt(_num(r.get("value")), metric),
                 fmt_ci(_num(r.get("ci_low")), _num(r.get("ci_high")), metric), r.get("n"),
                 fmt(_num(r.get("reported")), metric), fmt(_num(r.get("delta")), metric),
                 {True: "yes", False: "no", None: "–"}[_bool_or_none(r.get("reported_in_ci"))],
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
    figure.suptitle("mibot-eval leaderboard (95% intervals; grey = partial)", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def rebuild(
    results_dir: Path, csv_path: Path | None = None, markdown_path: Path | None = None,
    png_path: Path | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Rebuild the whole leaderboard from results_dir; returns (rows, markdown)."""
    results_dir = Path(results_dir)
    rows = build_rows(collect(run_dirs(results_dir)))
    csv_path = Path(csv_path) if csv_path is not None else results_dir / "leaderboard.csv"
    write_leaderboard(rows, csv_path)
    markdown = to_markdown(rows)
    if markdown_path is not None:
        Path(markdown_path).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown_path).write_text(markdown, encoding="utf-8")
    if png_path is not None:
        Path(png_path).parent.mkdir(parents=True, exist_ok=True)
        Path(png_path).write_bytes(chart_png(rows))
    return rows, markdown
