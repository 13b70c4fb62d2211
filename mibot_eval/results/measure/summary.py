"""The run summary every results view reads: records and manifest in, measured suites out.

`load_run(run_dir)` reads a run folder (manifest.json + episodes.jsonl), keeps one record per
episode (the latest line for its key: a `run --retry-errors` rerun replaces an errored record; other
repeats are named in warnings) and measures them (measure/suites.py) with the release's aggregation
rules (`aggregates:` in checkpoints.yaml, read by config.load_aggregates). `summary_from_records`
measures any records (e.g. the release's own outcomes, measure/release_baseline.py). Report,
leaderboard, HTML page and the regression gate all build on this module; `estimate_cells` gives an
estimate's cells in the rows of the report's and the leaderboard's CSVs.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

from mibot_eval.config import AggregateRule, load_aggregates, load_checkpoints
from mibot_eval.errors import UserError
from mibot_eval.results.measure.suites import (
    Estimate,
    SuiteStats,
    measure_aggregate,
    measure_suite,
    rate_estimate,
)
from mibot_eval.results.numbers import csv_digits
from mibot_eval.results.records import EpisodeRecord, is_ok, suite_of
from mibot_eval.results.store import RunStore, latest_per_key


# -- measuring a run -----------------------------------------------------------------------------
@dataclass
class RunSummary:
    """A run's manifest facts and everything measured from its episodes."""

    run_dir: Path
    run: str
    manifest: dict[str, Any]
    checkpoint: str
    checkpoint_id: str
    execution: dict[str, Any]
    protocols: dict[str, dict[str, Any]]  # suite -> {"hash": ..., "protocol": {...}}
    suites: dict[str, SuiteStats]
    aggregates: list[Estimate]
    reported: dict[str, dict[str, float]] = field(default_factory=dict)
    records: list[EpisodeRecord] = field(default_factory=list, repr=False)
    reported_source: str = ""  # the checkpoints.yaml entry the reported numbers come from
    warnings: list[str] = field(default_factory=list)  # e.g. an episode recorded twice, differently

    def episodes_per_task(self, suite: str) -> int | None:
        """Trials per task the run asked for: --episodes, else the protocol's."""
        selected = (self.manifest.get("selection") or {}).get("episodes_per_task")
        protocol = self.protocols.get(suite, {}).get("protocol") or {}
        return selected if selected is not None else protocol.get("episodes_per_task")


def dedupe(records: Iterable[EpisodeRecord]) -> list[EpisodeRecord]:
    """One record per (suite, key): an ok record beats an error, then the latest finished_at wins."""
    best: dict[tuple[str, str], EpisodeRecord] = {}
    for record in records:
        ident = (str(record.get("suite", "")), str(record.get("key")))
        rank = (is_ok(record), str(record.get("finished_at", "")))
        current = best.get(ident)
        if current is None or rank >= (is_ok(current), str(current.get("finished_at", ""))):
            best[ident] = cast(EpisodeRecord, dict(record))
    return list(best.values())


def conflicting_duplicates(records: Iterable[EpisodeRecord]) -> list[str]:
    """Keys recorded more than once with different outcomes (status or success): dedupe keeps one
    of them, so the reader should know."""
    outcomes: dict[tuple[str, str], set[tuple[Any, Any]]] = defaultdict(set)
    for record in records:
        ident = (str(record.get("suite", "")), str(record.get("key")))
        outcomes[ident].add((record.get("status", "ok"), record.get("success")))
    return sorted(key for (_, key), seen in outcomes.items() if len(seen) > 1)


def full_count(protocol: Mapping[str, Any] | None) -> int | None:
    """Episodes of the full protocol: the sum of its per-task `tasks[].episodes` when the suite
    lists them (SimplerEnv Google Robot: 300/240/108/108/108), else episodes_per_task x num_tasks;
    None when unknown."""
    if not protocol:
        return None
    listed = (protocol.get("params") or {}).get("tasks", protocol.get("tasks"))
    if isinstance(listed, list) and listed and all(
        isinstance(t, dict) and isinstance(t.get("episodes"), int) for t in listed
    ):
        return sum(int(t["episodes"]) for t in listed)
    per_task, tasks = protocol.get("episodes_per_task"), protocol.get("num_tasks")
    return int(per_task) * int(tasks) if isinstance(per_task, int) and isinstance(tasks, int) else None


def measure(
    records: Sequence[EpisodeRecord], protocols: Mapping[str, Mapping[str, Any]],
    requested: Mapping[str, int], rules: Sequence[AggregateRule], suites: Iterable[str] = (),
) -> tuple[dict[str, SuiteStats], list[Estimate]]:
    """Measure suites (those with records plus `suites`) and every applicable aggregate rule."""
    by_suite: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for record in records:
        by_suite[suite_of(record)].append(record)
    chains = {r.suites[0]: r.length for r in rules if r.rule == "chain_success"}
    measured = {}
    for name in sorted(set(by_suite) | set(suites)):
        protocol = (protocols.get(name) or {}).get("protocol") or {}
        measured[name] = measure_suite(
            name, by_suite.get(name, []), full=full_count(protocol), requested=requested.get(name),
            chain_length=chains.get(name), benchmark=str(protocol.get("benchmark", "")),
            sequence_subtasks=sequence_subtasks(protocol) if name in chains else None,
        )
    aggregates = [e for rule in rules for e in measure_aggregate(rule, measured)]
    return measured, aggregates


def sequence_subtasks(protocol: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """A chained suite's sequences (task id = index in its packaged sequence file) -> subtasks, from
    the file its protocol names (params.data.sequences under mibot_eval/data/<benchmark>/); {} when
    the protocol names none or the file is not there."""
    params = protocol.get("params") if isinstance(protocol.get("params"), Mapping) else protocol
    name = ((params or {}).get("data") or {}).get("sequences") if isinstance(params, Mapping) else None
    benchmark = protocol.get("benchmark")
    if not isinstance(name, str) or not isinstance(benchmark, str):
        return {}
    return dict(_packaged_sequences(benchmark, name))


@lru_cache(maxsize=4)
def _packaged_sequences(benchmark: str, name: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    path = resources.files("mibot_eval") / "data" / benchmark / name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    return tuple((str(i), tuple(str(t) for t in entry[1])) for i, entry in enumerate(raw)
                 if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], list))


def load_run(
    run_dir: Path, rules: Sequence[AggregateRule] | None = None, compare_with: str | None = None
) -> RunSummary:
    """Read a run folder (manifest.json + episodes.jsonl) and measure it.

    compare_with: take the reported numbers from this checkpoints.yaml entry instead of the run's
    own checkpoint (e.g. a fine-tune or a local copy against the released LIBERO numbers)."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    manifest = store.read_manifest() or {}
    lines = store.all_records()
    if not manifest and not lines:
        raise UserError(f"{run_dir}: not a run folder (no manifest.json or episodes.jsonl)")
    summary = summary_from_records(run_dir, manifest, latest_per_key(lines), rules, compare_with)
    retried = {r["key"] for r in latest_per_key(lines) if r.get("replaces")}
    summary.warnings[:0] = [
        f"episode {key} is recorded more than once with different outcomes; the report keeps the "
        "latest record" for key in conflicting_duplicates(r for r in lines if r["key"] not in retried)]
    return summary


def summary_from_records(
    run_dir: Path, manifest: Mapping[str, Any], records: Iterable[EpisodeRecord],
    rules: Sequence[AggregateRule] | None = None, compare_with: str | None = None,
) -> RunSummary:
    """Measure episode records with a manifest's facts (protocols, expected episodes, identity).

    Without a manifest entry for a suite, its protocol is the suite YAML's when the records' protocol
    hash matches it (so coverage is known); otherwise the suite's coverage is unknown."""
    records = list(records)
    warnings = [f"episode {key} is recorded more than once with different outcomes; the report keeps "
                "its ok record, then the latest" for key in conflicting_duplicates(records)]
    records = dedupe(records)
    rules = load_aggregates() if rules is None else rules
    checkpoint_info = manifest.get("checkpoint") or {}
    first = records[0] if records else {}
    checkpoint = str(checkpoint_info.get("name") or first.get("checkpoint") or "?")
    protocols = {str(k): dict(v) for k, v in (manifest.get("suites") or {}).items()
                 if isinstance(v, dict)}
    for record in records:
        entry = protocols.setdefault(suite_of(record), {})
        entry.setdefault("hash", record.get("protocol_hash"))
    for name, entry in protocols.items():
        if not entry.get("protocol"):
            entry.update(_protocol_from_yaml(name, entry.get("hash")))
    suites, aggregates = measure(records, protocols, manifest.get("expected_episodes") or {}, rules,
                                 suites=protocols)
    checkpoints = load_checkpoints()
    if compare_with is not None and compare_with not in checkpoints:
        raise UserError(f"--compare-with: unknown checkpoint '{compare_with}' "
                        f"(known: {', '.join(checkpoints)})")
    like = (checkpoint_info.get("like") or {}).get("name")  # an unlisted checkpoint run with --like
    info = checkpoints.get(compare_with or like or checkpoint)
    return RunSummary(
        run_dir=Path(run_dir), run=str(manifest.get("run") or first.get("run") or Path(run_dir).name),
        manifest=dict(manifest), checkpoint=checkpoint,
        checkpoint_id=str(checkpoint_info.get("hash") or first.get("checkpoint_id") or ""),
        execution=dict(manifest.get("execution") or first.get("execution") or {}),
        protocols=protocols, suites=suites, aggregates=aggregates,
        reported=dict(info.reported) if info else {}, records=records,
        reported_source=info.name if info else checkpoint, warnings=warnings,
    )


def _protocol_from_yaml(suite: str, protocol_hash: Any) -> dict[str, Any]:
    """{"protocol": ...} of the suite YAML when its hash is the records' (else nothing known)."""
    from mibot_eval.config import load_suite

    try:
        protocol = load_suite(suite)
    except UserError:
        return {}
    if protocol.protocol_hash() != protocol_hash:
        return {}
    return {"protocol": protocol.as_dict(), "protocol_from": f"suite YAML {protocol.source}"}


# -- looking numbers up -----------------------------------------------------------------------------
def lookup(summary: RunSummary, key: str, metric: str) -> Estimate | None:
    """The measured counterpart of a reported number (suite success, a task, an aggregate)."""
    for estimate in summary.aggregates:
        if estimate.key == key and estimate.metric == metric:
            return estimate
    suite = summary.suites.get(key)
    if suite is None:
        return None
    if metric == "success":
        return rate_estimate(key, metric, suite.rate, suite.partial)
    for task in suite.tasks.values():
        if task.name == metric:
            return rate_estimate(key, metric, task.rate, suite.partial)
    return None


@dataclass
class Comparison:
    """A reported number next to what this run measured."""

    key: str
    metric: str
    reported: float
    measured: Estimate | None

    @property
    def delta(self) -> float | None:
        if self.measured is None or self.measured.value is None:
            return None
        return self.measured.value - self.reported


def compare_reported(summary: RunSummary) -> list[Comparison]:
    """Reported numbers whose suite (or a member suite) this run measured."""
    out = []
    touched = set(summary.suites) | {e.key for e in summary.aggregates}
    for key, metrics in summary.reported.items():
        if key not in touched:
            continue
        for metric, value in metrics.items():
            out.append(Comparison(key, metric, float(value), lookup(summary, key, metric)))
    return out


# -- execution and CSV cells ----------------------------------------------------------------------
SYNC_IDENTITY = ("mode", "replan_steps")


def execution_identity(execution: Mapping[str, Any]) -> dict[str, Any]:
    """The execution settings that change results: sync -> mode and replan steps (delays, clock
    and prefix support do not act); async -> every recorded setting."""
    if execution.get("mode", "sync") == "sync":
        return {k: execution[k] for k in SYNC_IDENTITY if k in execution}
    return dict(execution)


def execution_label(execution: Mapping[str, Any]) -> str:
    """Mode plus the settings that matter, e.g. 'sync,replan_steps=10'."""
    identity = execution_identity(execution)
    mode = str(identity.get("mode", "?"))
    extra = [f"{k}={identity[k]}" for k in sorted(identity) if k != "mode"]
    return ",".join([mode, *extra])


ESTIMATE_COLUMNS = ("value", "ci_low", "ci_high", "delta")


def estimate_cells(e: Estimate, reported: float | None, rounded: bool = True,
                   consistent: bool | None = None) -> dict[str, Any]:
    """CSV cells of an estimate and of its comparison with a reported number (`consistent`: the
    caller's test of the two, results/measure/reported.py); rounded=False keeps full precision (round once,
    where the cell is written, never twice)."""
    digits = csv_digits(e.metric)

    def r(x: float | None) -> float | None:
        return x if x is None or not rounded else round(x, digits)

    cells = {"metric": e.metric, "value": r(e.value), "ci_low": r(e.low), "ci_high": r(e.high),
             "method": e.method, "n": e.n,
             "successes": None if e.rate is None else round(e.rate.successes, 3)}
    if reported is not None:
        comparison = Comparison(e.key, e.metric, reported, e)
        cells.update(reported=float(reported), delta=r(comparison.delta),
                     consistent_with_reported=consistent)
    return cells
