"""Robustness report: success under LIBERO-PRO perturbations next to the clean suite's, and the drop.

Reads recorded runs only (results/measure/summary.py `load_run`), never a simulator. A variant suite names
its clean suite and task correspondence in its recorded protocol (`perturbation.base_suite`,
`perturbation.base_tasks`, mibot_eval/data/suites/libero_pro/*.yaml). Per variant and per task: the variant's
success with its Clopper-Pearson 95% interval, the clean success, and drop = clean - variant in
percentage points with a Newcombe 95% interval (unpaired two-proportion difference,
stats/rates.newcombe_interval); **worse** when the interval lies above 0. Errored episodes count as
failures, as everywhere.

Pairing: LIBERO-PRO's variants start from their own init states (no row equals a clean one), so a
trial of a variant is not the same scene as the same trial of the clean suite: the comparison is
unpaired. The non-upstream `*_paired` suites start from the clean suite's init states; for them the
report also counts matched (task, trial) pairs and their discordant outcomes, but the interval stays
the unpaired one (the regression gate's paired machinery has not landed; unpaired is conservative).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.measure.summary import RunSummary, load_run
from mibot_eval.results.stats.rates import Rate, newcombe_interval, z_two_sided

# Protocol fields a variant inherits from its clean suite: a difference makes the drop meaningless.
SHARED_FIELDS = ("seed", "max_steps", "replan_steps", "action_dim", "execution", "request_seed")
SHARED_PARAMS = ("wait_steps", "wait_action", "scene_reset", "env", "instruction_format")
Outcomes = Mapping[tuple[str, int], bool]  # (task id, trial) -> success


@dataclass
class Comparison:
    """One variant (suite or task) against its clean counterpart."""

    variant: str
    family: str
    base_suite: str
    scope: str  # "suite" | "task"
    task: str = ""  # variant task id ("" for suite rows)
    base_task: str = ""
    task_name: str = ""
    variant_rate: Rate = field(default_factory=lambda: Rate(0, 0))
    clean_rate: Rate = field(default_factory=lambda: Rate(0, 0))
    pairing: str = "unpaired"
    pairs: int | None = None  # paired suites: matched (task, trial) pairs
    clean_only: int | None = None  # pairs where only the clean trial succeeded
    variant_only: int | None = None  # pairs where only the variant trial succeeded
    notes: list[str] = field(default_factory=list)

    def drop(self, confidence: float = 0.95) -> tuple[float, float, float] | None:
        """(drop, low, high) in percentage points, clean - variant; None without trials."""
        v, c = self.variant_rate, self.clean_rate
        if not v.n or not c.n:
            return None
        low, high = newcombe_interval(c.successes, c.n, v.successes, v.n, z_two_sided(confidence))
        return 100 * (c.successes / c.n - v.successes / v.n), 100 * low, 100 * high

    @property
    def verdict(self) -> str:
        d = self.drop()
        if d is None:
            return "–"
        return "**worse**" if d[1] > 0 else "better" if d[2] < 0 else "no"


@dataclass
class RobustnessReport:
    checkpoint: str
    clean_runs: list[Path]
    variant_runs: list[Path]
    rows: list[Comparison]
    missing: list[str]  # variant suites without a clean run of their base


# -- collecting runs ------------------------------------------------------------------------------
def run_dirs(path: Path) -> list[Path]:
    """A run folder, or the run folders inside a results folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: run folder not found")
    if (path / "manifest.json").is_file() or (path / "episodes.jsonl").is_file():
        return [path]
    found = sorted(p for p in path.iterdir()
                   if (p / "manifest.json").is_file() or (p / "episodes.jsonl").is_file())
    if not found:
        raise UserError(f"{path}: neither a run folder nor a folder of runs")
    return found


def _protocol(summary: RunSummary, suite: str) -> dict[str, Any]:
    return dict((summary.protocols.get(suite) or {}).get("protocol") or {})


def _perturbation(summary: RunSummary, suite: str) -> dict[str, Any] | None:
    value = (_protocol(summary, suite).get("params") or {}).get("perturbation")
    return dict(value) if isinstance(value, dict) and value.get("base_suite") else None


def _identity(summary: RunSummary) -> str:
    return summary.checkpoint_id or summary.checkpoint


# -- comparing ------------------------------------------------------------------------------------
def build_report(clean: Sequence[Path], variants: Sequence[Path]) -> RobustnessReport:
    """Compare every variant suite recorded under `variants` with its clean suite under `clean`
    (run folders or folders of runs; the same folder may hold both). A variant is compared with the
    clean run of its base suite by the same checkpoint (content hash, else name)."""
    clean_dirs = [d for p in clean for d in run_dirs(p)]
    variant_dirs = [d for p in variants for d in run_dirs(p)]
    summaries = {d: load_run(d) for d in dict.fromkeys([*clean_dirs, *variant_dirs])}
    clean_index: dict[str, list[RunSummary]] = {}
    for d in dict.fromkeys(clean_dirs):
        for suite, stats in summaries[d].suites.items():
            if _perturbation(summaries[d], suite) is None and stats.tasks:
                clean_index.setdefault(suite, []).append(summaries[d])
    rows: list[Comparison] = []
    missing: list[str] = []
    checkpoints: list[str] = []
    for d in dict.fromkeys(variant_dirs):
        summary = summaries[d]
        for suite in sorted(summary.suites):
            perturbation = _perturbation(summary, suite)
            if perturbation is None:
                continue
            checkpoints.append(summary.checkpoint)
            base = str(perturbation["base_suite"])
            candidates = clean_index.get(base, [])
            same = [c for c in candidates if _identity(c) == _identity(summary)]
            if len(same) > 1:
                raise UserError(f"clean suite {base} of {summary.checkpoint} is recorded in several runs "
                                f"({', '.join(str(c.run_dir) for c in same)}); pass one with --clean")
            if not same:
                others = sorted({c.checkpoint for c in candidates})
                found = f" (only runs of {', '.join(others)})" if others else ""
                missing.append(f"{suite} ({d.name}): no clean run of {base} by {summary.checkpoint}{found}")
                continue
            rows += _compare_suite(summary, suite, perturbation, same[0], base)
    if not checkpoints:
        raise UserError(f"no LIBERO-PRO variant suite recorded in {', '.join(str(p) for p in variants)}")
    if not rows:
        raise UserError(f"nothing to compare: {'; '.join(missing)}")
    return RobustnessReport(checkpoints[0], clean_dirs, variant_dirs, rows, missing)


def _base_task(base_tasks: Any, task: str) -> str | None:
    if base_tasks == "same_index":
        return task
    if isinstance(base_tasks, list) and task.isdigit() and int(task) < len(base_tasks):
        return str(base_tasks[int(task)])
    return None


def _protocol_notes(variant: Mapping[str, Any], clean: Mapping[str, Any], summaries: tuple[RunSummary, ...]
                    ) -> list[str]:
    """The inherited protocol fields (and execution settings) that differ between the two runs."""
    vp, cp = variant.get("params") or {}, clean.get("params") or {}
    differ = [k for k in SHARED_FIELDS if variant.get(k) != clean.get(k)]
    differ += [k for k in SHARED_PARAMS if vp.get(k) != cp.get(k)]
    notes = [f"protocols differ in {', '.join(differ)}"] if differ else []
    if summaries[0].execution != summaries[1].execution:
        notes.append("execution settings differ")
    return notes


def _outcomes(summary: RunSummary, suite: str) -> dict[tuple[str, int], bool]:
    """(task id, trial) -> success (errors are failures) for a suite's records."""
    out = {}
    for record in summary.records:
        if record.get("suite") == suite and record.get("trial") is not None:
            ok = record.get("status", "ok") != "error" and record.get("success") is True
            out[(str(record.get("task_id")), int(record["trial"]))] = ok
    return out


def _compare_suite(summary: RunSummary, suite: str, perturbation: Mapping[str, Any], clean: RunSummary,
                   base: str) -> list[Comparison]:
    vstats, cstats = summary.suites[suite], clean.suites[base]
    vproto, cproto = _protocol(summary, suite), _protocol(clean, base)
    params = vproto.get("params") or {}
    paired = params.get("init_states_suite") == (cproto.get("params") or {}).get("task_suite", base) and (
        vproto.get("seed") == cproto.get("seed"))
    pairing = "paired: clean init states (non-upstream)" if paired else "unpaired: own init states"
    family = str(perturbation.get("family", "?"))
    notes = _protocol_notes(vproto, cproto, (summary, clean))
    v_out, c_out = (_outcomes(summary, suite), _outcomes(clean, base)) if paired else ({}, {})
    tasks: list[Comparison] = []
    for key, vtask in vstats.tasks.items():
        base_key = _base_task(perturbation.get("base_tasks"), key)
        ctask = cstats.tasks.get(base_key) if base_key is not None else None
        row = Comparison(suite, family, base, "task", key, base_key or "–", vtask.name, vtask.rate,
                         ctask.rate if ctask else Rate(0, 0), pairing)
        if ctask is None:
            row.notes.append(f"no clean trials of {base} task {base_key}")
        elif paired:
            _count_pairs(row, v_out, c_out, key, str(base_key))
        tasks.append(row)
    matched = [t for t in tasks if t.clean_rate.n]
    suite_row = Comparison(
        suite, family, base, "suite", variant_rate=_pool(t.variant_rate for t in matched),
        clean_rate=_pool(t.clean_rate for t in matched), pairing=pairing, notes=list(notes),
    )
    if paired:
        suite_row.pairs = sum(t.pairs or 0 for t in matched)
        suite_row.clean_only = sum(t.clean_only or 0 for t in matched)
        suite_row.variant_only = sum(t.variant_only or 0 for t in matched)
    for side, stats in (("variant", vstats), ("clean", cstats)):
        if stats.partial:
            suite_row.notes.append(f"{side} {stats.status}")
    if len(matched) < len(tasks):
        suite_row.notes.append(f"{len(matched)}/{len(tasks)} tasks have clean trials (pooled over those)")
    return [suite_row, *tasks]


def _count_pairs(row: Comparison, v_out: Outcomes, c_out: Outcomes, task: str, base_task: str) -> None:
    trials = sorted(t for k, t in v_out if k == task and (base_task, t) in c_out)
    row.pairs = len(trials)
    row.clean_only = sum(c_out[(base_task, t)] and not v_out[(task, t)] for t in trials)
    row.variant_only = sum(v_out[(task, t)] and not c_out[(base_task, t)] for t in trials)


def _pool(rates: Iterable[Rate]) -> Rate:
    rates = list(rates)
    return Rate(sum(r.successes for r in rates), sum(r.n for r in rates))


# -- rendering ------------------------------------------------------------------------------------
