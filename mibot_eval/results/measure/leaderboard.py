"""The leaderboard's rows: one per (checkpoint, suite, protocol, execution), measured from pooled
episode records (measure/pooling.py), never from printed summaries.

Runs of the same checkpoint (name and content hash), suite, protocol hash and execution settings are
pooled into one row. Aggregates over several suites (rule mean_of_suites, e.g. libero.average) get
rows of kind `aggregate`, computed from the pooled member suites for each run that recorded every
member suite. A row is a `LeaderboardRow`: its fields are the long CSV's columns, in order, each with
what it holds; an empty cell is not applicable / unknown. `leaderboard_frame` is the long table as a
pandas DataFrame; views/leaderboard.py writes it (rounding each estimate once), views/pivot.py pivots
it by benchmark headline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypedDict, get_type_hints

import numpy as np
import pandas as pd

from mibot_eval.config import AggregateRule, load_aggregates, load_checkpoints, load_suite, suites_dir
from mibot_eval.errors import UserError
from mibot_eval.results.measure.pooling import Group, GroupKey, Pool
from mibot_eval.results.measure.published import HEADLINES
from mibot_eval.results.measure.reported import consistent_with
from mibot_eval.results.measure.suites import (
    Estimate,
    SuiteStats,
    measure_aggregate,
    measure_suite,
    rate_estimate,
)
from mibot_eval.results.measure.summary import estimate_cells, full_count
from mibot_eval.results.numbers import fmt, none_if_nan
from mibot_eval.results.records import is_ok


class LeaderboardRow(TypedDict, total=False):
    """One row of the long leaderboard (the CSV's columns, in this order)."""

    checkpoint: str  # checkpoint name
    checkpoint_id: str  # checkpoint content hash
    suite: str  # suite name, or the aggregate key for kind=aggregate (e.g. libero)
    kind: str  # suite | aggregate
    protocol: str  # suite protocol hash; aggregate: hash over "suite=hash" of its members
    execution: str  # execution mode and parameters, e.g. sync,replan_steps=10
    # headline metric: success (rate of the suite), average (a suite with a mean_of_tasks /
    # mean_of_task_groups rule, SimplerEnv), avg_len (a suite with a chain_success rule, CALVIN), or
    # the aggregate's metric
    metric: str
    value: float | None  # the headline value: percent; avg_len in subtasks
    ci_low: float | None  # 95% interval (never zero width; coverage in benchmarks/gate_calibration.py)
    ci_high: float | None
    # the interval's method: Clopper-Pearson (rates), MOVER (Clopper-Pearson terms) (averages of
    # rates), Clopper-Pearson on avg_len / length (bounded mean) (CALVIN avg_len)
    method: str
    n: int  # independent trials (CALVIN sequences; WidowX repeats collapsed to one)
    successes: float | None  # successes among n (rates only; fractional if repeats disagree)
    episodes: int  # ok episode records (repeats included)
    errors: int  # episodes that ended in an error (each also a failure in the rates, as in the release)
    expected: int | None  # episodes of the full protocol, episodes_per_task x num_tasks (aggregate: sum)
    coverage: float | None  # 100 x episodes / expected
    partial: bool  # true when coverage < 100 (aggregate: a member partial or missing)
    reported: float  # the release's number for this checkpoint, suite and metric (checkpoints.yaml)
    delta: float | None  # value - reported
    # true when the two-sided test of value - reported does not reject at 0.05 (this row alone):
    # two-sample against the release's logged episodes where they hold the number
    # (measure/reported.py), else against the reported figure taken as exact
    consistent_with_reported: bool | None
    details: str  # secondary metrics, "name=value;..." (chain_1..chain_5; pooled success)
    sec_per_episode: float | None  # mean wall-clock seconds per recorded episode (timings.total_s)
    runs: str  # the run folders pooled into the row, ";"-separated
    # Motion (mibot_eval/run/motion.py, each record's metrics.motion): the mean over the row's ok
    # episodes that have the value (aggregate: over its member suites' episodes), None when none has
    # it; written with 4 decimals
    time_to_success_s: float | None  # seconds until success (successful episodes only record it)
    seam_jump_l2: float | None  # mean |a_t - a_{t-1}| at chunk seams
    inside_jump_l2: float | None  # mean |a_t - a_{t-1}| between consecutive actions of one chunk
    seam_vs_old_chunk_l2: float | None  # mean |first new action - what the replaced chunk would execute|
    plan_vs_executed_l2: float | None  # mean |planned action - executed action| over steps the plan covers
    jerk_seam_l2: float | None  # mean third-difference norm over windows that cross a seam
    jerk_inside_l2: float | None  # mean third-difference norm inside one chunk
    idle_fraction: float | None  # hold (idle) steps / steps
    gripper_toggles: float | None  # sign changes of the gripper command per episode


LEADERBOARD_COLUMNS = tuple(get_type_hints(LeaderboardRow))
MOTION_COLUMNS = LEADERBOARD_COLUMNS[LEADERBOARD_COLUMNS.index("time_to_success_s"):]
KEY_COLUMNS = ("checkpoint", "checkpoint_id", "suite", "kind", "protocol", "execution")
SORT_COLUMNS = ("checkpoint", "kind", "suite", "protocol", "execution", "checkpoint_id")


def episode_frame(pool: Pool) -> pd.DataFrame:
    """One row per ok episode record of the pool: its group's position in pool.groups (column
    `group`) and its metrics.motion values (MOTION_COLUMNS, NaN where absent or not a number)."""
    rows = [{"group": index, **{c: motion.get(c) for c in MOTION_COLUMNS}}
            for index, group in enumerate(pool.groups.values()) for record in group.records
            if is_ok(record)
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
) -> list[LeaderboardRow]:
    """Leaderboard rows for every group, or only those of some runs (numbers at full precision:
    the CSV rounds them once, where it writes them)."""
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
) -> LeaderboardRow:
    checkpoint, checkpoint_id, name, protocol, execution = group.key
    head, others = _headline(suite, rules)
    row: LeaderboardRow = {
        "checkpoint": checkpoint, "checkpoint_id": checkpoint_id, "suite": name, "kind": "suite",
        "protocol": protocol, "execution": execution, "episodes": suite.episodes,
        "errors": suite.errors, "expected": suite.full,
        "coverage": None if suite.coverage is None else round(100 * suite.coverage, 2),
        "partial": suite.partial,
        "details": ";".join(f"{e.metric}={fmt(e.value, e.metric)}" for e in others),
        "sec_per_episode": _round(suite.timings.get("total_s"), 3),
        "runs": ";".join(sorted(group.runs)),
    }
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
) -> LeaderboardRow:
    present = {s: members[s] for s in rule.suites}
    first = next(iter(present.values()))
    suites = {s: stats[k] for s, k in present.items()}
    estimate = measure_aggregate(rule, suites)[0]
    expected = [suites[s].full for s in present]
    episodes = sum(s.episodes for s in suites.values())
    total = sum(e for e in expected if e) if all(expected) else None
    row: LeaderboardRow = {
        "checkpoint": first[0], "checkpoint_id": first[1], "suite": rule.key, "kind": "aggregate",
        "protocol": aggregate_protocol(rule.suites, [present[s][3] for s in rule.suites]),
        "execution": first[4],
        "episodes": episodes, "errors": sum(s.errors for s in suites.values()), "expected": total,
        "coverage": round(100 * episodes / total, 2) if total else None,
        "partial": estimate.partial, "details": estimate.note,
        "runs": ";".join(sorted({r for k in present.values() for r in pool.groups[k].runs})),
    }
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


def leaderboard_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The long table: sorted rows with LEADERBOARD_COLUMNS (object cells, None where empty)."""
    ordered = [{c: none_if_nan(r.get(c)) for c in LEADERBOARD_COLUMNS} for r in sort_rows(rows)]
    return pd.DataFrame(ordered, columns=list(LEADERBOARD_COLUMNS), dtype=object)


# -- which protocol is official ----------------------------------------------------------------------
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

