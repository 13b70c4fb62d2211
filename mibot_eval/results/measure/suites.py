"""Measuring recorded episodes: a suite's tasks, pooled rate, errors, coverage and timings
(`measure_suite` -> SuiteStats), and the release's aggregation rules (checkpoints.yaml `aggregates:`,
config.AggregateRule) over measured suites (`measure_aggregate` -> Estimate). Pure functions, no I/O;
the intervals come from results/stats/.

  chain_counts / average_length   CALVIN chain success and average length (project rules)

Rules the measurement follows:
  * status "error" records count as failed trials, as the release counts them (its clients catch an
    exception in a trial and return False): every rate here is the release-comparable one. They are
    also counted apart in `errors` (the report lists them); a CALVIN sequence that raised counts as
    0 completed subtasks.
  * Deterministic repeats (SimplerEnv WidowX runs each episode six times with identical inputs and
    noise seed) are one independent trial: records sharing `metrics.repeat_of` (the key of the
    episode they repeat; the original has no repeat_of) are collapsed into one unit whose value is
    their mean success. The point estimate is unchanged (90/144 = 15/24) but intervals count 24
    trials per task, not 144. Groups whose copies disagree are counted in `inconsistent_repeats`.
  * Coverage counts episode records (repeats and errors included), as the protocol counts them: a
    suite is partial when it has fewer episodes than episodes_per_task x num_tasks, or than the run
    asked for (`expected_episodes`).
  * Task groups (SimplerEnv's drawer = open + close drawer) pool their members' trials: the group
    rate is the members' rates weighted by their trial counts (108 + 108 VM, so the mean of both).
  * Averages of rates (mean_of_suites, mean_of_tasks, mean_of_task_groups) are weighted sums of
    independent rates: their interval is MOVER over the rates' Clopper-Pearson intervals
    (results/stats/intervals.py), which never has zero width (all-fail or all-success included). CALVIN's
    average length is length x the mean of completed / length, a mean of values in [0, 1] whose
    variance is at most that of a proportion with the same mean: its interval is Clopper-Pearson on
    that mean (conservative, never zero width). Each Estimate keeps its terms, so a difference of
    two estimates (a run against the release) is MOVER over both sides' terms.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mibot_eval.config import AggregateRule
from mibot_eval.results.records import EpisodeRecord, is_ok
from mibot_eval.results.stats.intervals import (
    AVG_LEN_METHOD,
    MOVER_METHOD,
    RATE_METHOD,
    Term,
    mover,
    rate_term,
    z_of,
)
from mibot_eval.results.stats.rates import CONFIDENCE, Rate


def chain_counts(completed: Iterable[int], length: int) -> list[int]:
    """How many sequences completed at least k subtasks in a row, for k = 1..length."""
    values = list(completed)
    return [sum(1 for c in values if c >= k) for k in range(1, length + 1)]


def average_length(completed: Sequence[int]) -> float:
    """CALVIN average length: mean number of subtasks completed in a row."""
    return sum(completed) / len(completed) if completed else float("nan")


def mean_of_group_means(
    values: Mapping[str, float], groups: Sequence[Sequence[str]],
    weights: Mapping[str, float] | None = None,
) -> float:
    """Mean over groups of each group's pooled value: its members' values weighted by their trial
    counts (equal weights without counts), e.g. the drawer task of SimplerEnv Google Robot."""
    w = weights or {}
    pooled = [sum(values[m] * w.get(m, 1.0) for m in g) / sum(w.get(m, 1.0) for m in g) for g in groups]
    return sum(pooled) / len(pooled)




@dataclass
class TaskStats:
    """One task (or CALVIN subtask): its independent trials and what was excluded."""

    key: str  # task id as text, or the subtask name for chain suites
    name: str
    units: list[float] = field(default_factory=list)
    episodes: int = 0  # ok records, repeats included
    errors: int = 0
    inconsistent_repeats: int = 0

    @property
    def rate(self) -> Rate:
        return Rate(sum(self.units), len(self.units))


@dataclass
class ChainStats:
    """Per-sequence completed-subtask counts of a chained suite (CALVIN), keyed by record key."""

    length: int
    completed: dict[str, int] = field(default_factory=dict)

    def rates(self, keys: Iterable[str] | None = None) -> list[Rate]:
        values = self._values(keys)
        return [Rate(c, len(values)) for c in chain_counts(values, self.length)]

    def average_length(self, keys: Iterable[str] | None = None) -> float:
        return average_length(self._values(keys))

    def _values(self, keys: Iterable[str] | None) -> list[int]:
        if keys is None:
            return list(self.completed.values())
        return [self.completed[k] for k in keys if k in self.completed]


@dataclass
class SuiteStats:
    """Everything measured about one suite of one run (or of pooled runs)."""

    name: str
    benchmark: str
    tasks: dict[str, TaskStats]
    episodes: int  # ok records
    errors: int  # error records (also failed trials in every rate)
    full: int | None  # episodes of the full protocol (report.full_count)
    requested: int | None  # what the run asked for (manifest expected_episodes)
    chain: ChainStats | None = None
    timings: dict[str, float] = field(default_factory=dict)  # mean seconds per recorded episode
    error_samples: list[tuple[str, str]] = field(default_factory=list)

    @property
    def units(self) -> list[float]:
        return [u for t in self.tasks.values() for u in t.units] if self.chain is None else [
            float(c == self.chain.length) for c in self.chain.completed.values()
        ]

    @property
    def rate(self) -> Rate:
        """Pooled success over independent trials (chain suites: whole chains completed)."""
        units = self.units
        return Rate(sum(units), len(units))

    def pooled(self, task_keys: Iterable[str]) -> Rate:
        chosen = [self.tasks[k] for k in task_keys if k in self.tasks]
        return Rate(sum(sum(t.units) for t in chosen), sum(len(t.units) for t in chosen))

    @property
    def trials(self) -> int:
        """Recorded episodes, errors included (what coverage and partial count)."""
        return self.episodes + self.errors

    @property
    def coverage(self) -> float | None:
        return self.trials / self.full if self.full else None

    @property
    def coverage_known(self) -> bool:
        return self.full is not None or self.requested is not None

    @property
    def partial(self) -> bool:
        """Fewer episodes than the protocol or the request; also when nobody knows how many."""
        return not self.coverage_known or any(target is not None and self.trials < target
                                              for target in (self.full, self.requested))

    @property
    def status(self) -> str:
        """'complete', 'partial: 20/500 episodes (4.0% of the protocol)' or 'unknown coverage ...'."""
        if not self.coverage_known:
            return (f"unknown coverage: {self.trials} episodes, protocol unknown (no manifest and no "
                    "suite YAML with the records' protocol hash)")
        if not self.partial:
            return "complete"
        target = self.full if self.full is not None else self.requested
        text = f"partial: {self.trials}/{target} episodes"
        if self.coverage is not None:
            text += f" ({100 * self.coverage:.1f}% of the protocol)"
        if self.requested is not None and self.requested != target:
            text += f"; the run asked for {self.requested}"
        return text

    @property
    def inconsistent_repeats(self) -> int:
        return sum(t.inconsistent_repeats for t in self.tasks.values())


def _unit_groups(records: Iterable[EpisodeRecord]) -> dict[str, list[bool]]:
    """Independent-trial groups: a record and its deterministic repeats (metrics.repeat_of). An
    error record is a failure."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for record in records:
        metrics = record.get("metrics") or {}
        success = is_ok(record) and record.get("success") is True
        groups[str(metrics.get("repeat_of") or record.get("key"))].append(success)
    return groups


def _task_key(record: EpisodeRecord) -> str:
    if record.get("task_id") is not None:
        return str(record["task_id"])
    key = str(record.get("key", ""))
    parts = key.split("/")
    return parts[1] if len(parts) >= 3 else str(record.get("task_name", "?"))


def _task_order(key: str) -> tuple[int, Any]:
    return (0, int(key)) if key.lstrip("-").isdigit() else (1, key)


def measure_suite(
    name: str, records: Sequence[EpisodeRecord], *, full: int | None = None,
    requested: int | None = None, chain_length: int | None = None, benchmark: str = "",
    sequence_subtasks: Mapping[str, Sequence[str]] | None = None,
) -> SuiteStats:
    """Measure one suite from its episode records (any order; duplicates should be removed first).

    sequence_subtasks (chained suites): task id -> the sequence's subtasks, for records that do not
    carry metrics.subtasks (an errored sequence), so that its failure counts against its first
    subtask as every other rate counts errors."""
    ok = [r for r in records if is_ok(r)]
    failed = [r for r in records if not is_ok(r)]
    benchmark = benchmark or next((str(r["benchmark"]) for r in records if r.get("benchmark")), "")
    stats = SuiteStats(name, benchmark, {}, len(ok), len(failed), full, requested,
                       timings=_mean_timings(records),
                       error_samples=[(str(r.get("key")), str(r.get("error") or "")) for r in failed])
    if chain_length is not None:
        stats.chain = ChainStats(chain_length, {
            str(r.get("key")): int((r.get("metrics") or {}).get("completed", 0)) if is_ok(r) else 0
            for r in records
        })
        stats.tasks = _subtask_stats(records, chain_length, sequence_subtasks or {})
        return stats
    by_task: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_task[_task_key(record)].append(record)
    for key in sorted(by_task, key=_task_order):
        task_records = by_task[key]
        task_ok = [r for r in task_records if is_ok(r)]
        task = TaskStats(key, str(task_records[0].get("task_name") or key),
                         episodes=len(task_ok), errors=len(task_records) - len(task_ok))
        for outcomes in _unit_groups(task_records).values():
            value = sum(outcomes) / len(outcomes)
            task.units.append(value)
            task.inconsistent_repeats += 0 < value < 1 and len(outcomes) > 1
        stats.tasks[key] = task
    return stats


def _subtask_stats(records: Sequence[EpisodeRecord], length: int,
                   sequence_subtasks: Mapping[str, Sequence[str]]) -> dict[str, TaskStats]:
    """CALVIN per-subtask success among the sequences that attempted it. An errored sequence is a
    failure of its first subtask (0 completed, as in the chain rates); its subtasks come from the
    record or, when it has none, from sequence_subtasks (an error record without either is counted
    in no subtask: there is no telling which it attempted)."""
    tasks: dict[str, TaskStats] = {}
    for record in records:
        metrics = record.get("metrics") or {}
        ok = is_ok(record)
        completed = int(metrics.get("completed", 0)) if ok else 0
        subtasks = list(metrics.get("subtasks") or sequence_subtasks.get(str(record.get("task_id")), ()))
        for position, subtask in enumerate(subtasks[:length][: completed + 1]):
            task = tasks.setdefault(str(subtask), TaskStats(str(subtask), str(subtask)))
            task.units.append(float(position < completed))
            if ok:
                task.episodes += 1
            else:
                task.errors += 1
    return {k: tasks[k] for k in sorted(tasks)}


def _mean_timings(records: Sequence[EpisodeRecord]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        for key, value in (record.get("timings") or {}).items():
            if isinstance(value, (int, float)):
                sums[key] += float(value)
                counts[key] += 1
    return {k: sums[k] / counts[k] for k in sums}


# -- aggregation rules ----------------------------------------------------------------------------


@dataclass
class Estimate:
    """One measured number with its interval (an aggregate, a CALVIN chain rate, a suite rate...).

    value None when a member is missing. Percent, except avg_len (tasks). `terms`: the number as a
    weighted sum of independent rates (intervals.Term, weights in the estimate's unit), from which
    its interval and any difference with another estimate are computed (MOVER)."""

    key: str
    metric: str
    value: float | None
    low: float | None = None
    high: float | None = None
    method: str = RATE_METHOD
    n: int = 0
    partial: bool = False
    note: str = ""
    rate: Rate | None = None  # rates (suite, task, chain_k): the underlying proportion
    terms: tuple[Term, ...] = field(default=(), repr=False)


def _tasks_by_name(suite: SuiteStats) -> dict[str, TaskStats]:
    return {t.name: t for t in suite.tasks.values()}


def terms_estimate(key: str, metric: str, terms: Sequence[Term], method: str, n: int,
                   partial: bool = False, note: str = "", rate: Rate | None = None,
                   confidence: float = CONFIDENCE) -> Estimate:
    """An Estimate of sum(weight x value) over terms with its MOVER interval."""
    value = sum(t.weight * t.value for t in terms)
    low, high = mover(terms, z_of(confidence))
    return Estimate(key, metric, value, low, high, method, n, partial, note, rate, tuple(terms))


def measure_aggregate(
    rule: AggregateRule, suites: Mapping[str, SuiteStats], *, confidence: float = CONFIDENCE,
) -> list[Estimate]:
    """Apply one rule to measured suites; [] when none of its suites was measured."""
    present = [s for s in rule.suites if s in suites]
    if not present:
        return []
    missing = [s for s in rule.suites if s not in suites]
    partial = bool(missing) or any(suites[s].partial for s in present)
    if rule.rule == "chain_success":
        return _measure_chain(rule, suites[present[0]], confidence)
    if missing:
        return [Estimate(rule.key, rule.name, None, method=MOVER_METHOD, partial=True,
                         note=f"missing suite(s): {', '.join(missing)}")]
    if rule.rule == "mean_of_suites":
        rates = [suites[s].rate for s in rule.suites]
    else:
        by_name = _tasks_by_name(suites[rule.suites[0]])
        names = [m for _, members in rule.groups for m in members]
        absent = [m for m in names if m not in by_name or not by_name[m].units]
        if absent:
            return [Estimate(rule.key, rule.name, None, method=MOVER_METHOD, partial=True,
                             note=f"no trials for task(s): {', '.join(absent)}")]
        rates = [Rate(sum(sum(by_name[m].units) for m in members),
                      sum(len(by_name[m].units) for m in members)) for _, members in rule.groups]
    if any(not r.n for r in rates):
        return [Estimate(rule.key, rule.name, None, method=MOVER_METHOD, partial=True,
                         note="a member has no trials")]
    terms = [rate_term(r.successes, r.n, 100 / len(rates)) for r in rates]
    notes = [f"partial member(s): {', '.join(s for s in present if suites[s].partial)}"] if partial else []
    return [terms_estimate(rule.key, rule.name, terms, MOVER_METHOD, sum(r.n for r in rates), partial,
                           "; ".join(notes), confidence=confidence)]


def _measure_chain(rule: AggregateRule, suite: SuiteStats, confidence: float) -> list[Estimate]:
    chain = suite.chain
    if chain is None or not chain.completed:
        return [Estimate(rule.key, m, None, partial=True, note="no chain records")
                for m in rule.metrics()]
    out = [rate_estimate(rule.key, f"chain_{k}", rate, suite.partial, confidence=confidence)
           for k, rate in enumerate(chain.rates(), start=1)]
    out.append(length_estimate(rule.key, list(chain.completed.values()), chain.length, suite.partial,
                               confidence))
    return out


def length_estimate(key: str, completed: Sequence[int], length: int, partial: bool = False,
                    confidence: float = CONFIDENCE) -> Estimate:
    """CALVIN's average length with its interval: length x Clopper-Pearson of the mean of
    completed / length (a mean of values in [0, 1]; see the module docstring)."""
    term = rate_term(sum(completed) / length, len(completed), float(length))
    return terms_estimate(key, "avg_len", [term], AVG_LEN_METHOD, len(completed), partial,
                          confidence=confidence)


def rate_estimate(key: str, metric: str, rate: Rate, partial: bool = False, note: str = "",
                  confidence: float = CONFIDENCE) -> Estimate:
    """A proportion as an Estimate (percent) with its Clopper-Pearson interval."""
    if not rate.n:
        return Estimate(key, metric, None, None, None, RATE_METHOD, 0, partial, note, rate)
    return terms_estimate(key, metric, [rate_term(rate.successes, rate.n, 100.0)], RATE_METHOD, rate.n,
                          partial, note, rate, confidence)
