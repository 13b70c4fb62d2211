"""A run next to the release's own outcomes (results/measure/release_baseline.py), task by task.

  LIBERO, SimplerEnv  per task: the run's successes / trials vs the release's, the difference with a
                      95% MOVER interval over both Clopper-Pearson intervals (two independent
                      proportions) and the two-sided exact unconditional test of "no difference"
                      (results/differences.unpaired). SimplerEnv
                      also pairs episodes by their index in the official list (the release's logs
                      name each one): agree / disagree counts per task.
  CALVIN              chain_1..chain_5 (as above) and the average length (MOVER over both sides'
                      bounded-mean intervals, measure/suites.length_estimate): the release's logs do
                      not say which sequence had which length, so sequences cannot be paired.
The rows are one family: a row **differs** when its Holm-adjusted p-value is below 0.05 (40 LIBERO
tasks tested alone would flag a faithful rerun somewhere 18-83% of the time).
`release_summary(suites)` measures the release like a run, for `check --baseline release`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.config import load_suite
from mibot_eval.errors import UserError
from mibot_eval.results.measure.release_baseline import RUN_NAME, load_release_baseline
from mibot_eval.results.measure.suites import length_estimate
from mibot_eval.results.measure.summary import RunSummary, summary_from_records
from mibot_eval.results.stats import differences
from mibot_eval.results.stats.holm import holm
from mibot_eval.results.stats.intervals import AVG_LEN_METHOD, MOVER_METHOD
from mibot_eval.results.stats.rates import Rate

LEVEL = 0.05


def release_summary(suites: Iterable[str]) -> RunSummary:
    """The release's outcomes on `suites` measured like a run (its protocol: the official YAMLs)."""
    baseline = load_release_baseline()
    names = [s for s in suites if s in baseline.suites()]
    if not names:
        raise UserError(f"the release has no logged outcomes for {', '.join(suites) or 'these suites'} "
                        f"(it has: {', '.join(baseline.suites())})")
    protocols = {name: load_suite(name) for name in names}
    manifest: dict[str, Any] = {
        "run": RUN_NAME,
        "checkpoint": {"name": baseline.checkpoint(names[0]), "hash": "release-logs"},
        "execution": {"mode": "sync", "replan_steps": protocols[names[0]].replan_steps},
        "suites": {n: {"hash": p.protocol_hash(), "protocol": p.as_dict()} for n, p in protocols.items()},
        "source": baseline.source,
    }
    records = [r for name in names for r in baseline.records(name)]
    return summary_from_records(Path(RUN_NAME), manifest, records)


@dataclass(frozen=True)
class ReleaseRow:
    """One number of the run next to the release's."""

    suite: str
    item: str  # task key and name, chain_k or avg_len
    run: str
    release: str
    diff: float | None  # run - release, percentage points (avg_len: subtasks)
    low: float | None
    high: float | None
    metric: str = "success"
    agreement: str = ""  # SimplerEnv: episode-level agree / disagree counts
    p_value: float | None = None  # two-sided, "no difference"
    p_adjusted: float | None = None  # Holm over the comparison's rows
    method: str = MOVER_METHOD

    @property
    def differs(self) -> bool:
        return self.p_adjusted is not None and self.p_adjusted < LEVEL


def _rate_row(suite: str, item: str, mine: Rate, theirs: Rate, metric: str = "success") -> ReleaseRow:
    if not mine.n or not theirs.n:
        return ReleaseRow(suite, item, f"{mine.successes:g} / {mine.n}", f"{theirs.successes:g} / {theirs.n}",
                          None, None, None, metric)
    d = differences.unpaired(mine, theirs, 0.0)
    return ReleaseRow(suite, item, f"{mine.successes:g} / {mine.n}", f"{theirs.successes:g} / {theirs.n}",
                      d.estimate, d.low, d.high, metric, p_value=d.p_two_sided)


def _agreement(summary: RunSummary, suite: str, task_id: str) -> str:
    baseline = load_release_baseline()
    both = neither = run_only = release_only = 0
    for record in summary.records:
        if str(record.get("suite")) != suite or str(record.get("task_id")) != task_id:
            continue
        index = (record.get("metrics") or {}).get("reference_index")
        theirs = None if index is None else baseline.simpler_outcome(suite, int(index))
        if theirs is None:
            continue
        mine = record.get("status", "ok") == "ok" and record.get("success") is True
        both += mine and theirs
        neither += not mine and not theirs
        run_only += mine and not theirs
        release_only += theirs and not mine
    total = both + neither + run_only + release_only
    if not total:
        return ""
    return (f"agree {both + neither}/{total} (both succeed {both}, both fail {neither}); "
            f"disagree {run_only + release_only} (run only {run_only}, release only {release_only})")


def release_rows(summary: RunSummary) -> list[ReleaseRow]:
    """The run's suites that the release logged, compared number by number."""
    baseline = load_release_baseline()
    mine_suites = [s for s in summary.suites if s in baseline.suites() and summary.suites[s].trials]
    if not mine_suites:
        return []
    release = release_summary(mine_suites)
    rows: list[ReleaseRow] = []
    for name in mine_suites:
        mine, theirs = summary.suites[name], release.suites[name]
        if mine.chain is not None and theirs.chain is not None:
            for k, (a, b) in enumerate(zip(mine.chain.rates(), theirs.chain.rates(), strict=True), start=1):
                rows.append(_rate_row(name, f"chain_{k}", a, b, f"chain_{k}"))
            rows.append(_length_row(name, list(mine.chain.completed.values()),
                                    list(theirs.chain.completed.values()), mine.chain.length))
            continue
        for key, task in mine.tasks.items():
            other = theirs.tasks.get(key)
            if other is None or not task.units:
                continue
            row = _rate_row(name, f"{key} ({task.name})" if key != task.name else key, task.rate, other.rate)
            if mine.benchmark == "simpler":
                row = ReleaseRow(**{**row.__dict__, "agreement": _agreement(summary, name, key)})
            rows.append(row)
    adjusted = iter(holm([r.p_value for r in rows if r.p_value is not None]))
    return [replace(r, p_adjusted=next(adjusted)) if r.p_value is not None else r for r in rows]


def _length_row(suite: str, mine: list[int], theirs: list[int], length: int) -> ReleaseRow:
    a, b = length_estimate(suite, mine, length), length_estimate(suite, theirs, length)
    d = differences.linear(a.terms, b.terms, 0.0)
    return ReleaseRow(suite, "avg_len", f"{np.mean(mine):.3f} ({len(mine)} seq.)",
                      f"{np.mean(theirs):.3f} ({len(theirs)} seq.)", d.estimate, d.low, d.high, "avg_len",
                      p_value=d.p_two_sided, method=f"MOVER ({AVG_LEN_METHOD})")
