"""`mibot-eval plan-gate`: how many episodes per task a regression gate needs, before it runs.

    mibot-eval plan-gate --baseline RUN|NAME --drop PP [--power 0.8] [--alpha 0.05]
                         [--max-drop PP] [--discordance Q] [--suites S,...]

For the check you will run (margin M: --max-drop, else each suite YAML's gate.max_drop) it answers
two questions per suite, and the first per task:
  catch  episodes per task so that a true drop of PP (> M) is declared regressed with the power
         asked for: one task dropping PP (at Holm's first-step level alpha / rows, rows = the gate's
         tasks + suites + averages), or the whole suite dropping PP;
  pass   episodes per task so that a candidate with no real change is shown not worse (within M)
         on the suite, at alpha (the run's "not worse" needs each suite shown; no adjustment).

Baseline RUN: paired (the candidate reruns the baseline's episodes), from the run's task rates and a
discordance (share of episodes whose outcome differs between the two runs): --discordance, else
2 p (1 - p) per task (outcomes independent given the task: an upper estimate for a seeded rerun;
measure yours by rerunning the baseline and reading `check`'s discordant counts, see
docs/regression-gate.md). Under a drop PP the discordance is that plus PP.
Baseline NAME (a checkpoints.yaml entry): against the release's logged episodes where they exist
(unpaired, their per-task n fixed), else the entry's reported suite rates (n unknown: the figure
taken as exact, one-sample).

Normal approximations of the exact tests of results/stats/exact.py with the variance at the null
boundary and at the alternative (n = ((z_a sd0 + z_b sd1) / (PP - M))^2);
benchmarks/gate_calibration.py checks the exact power at planned sizes. A figure above the
protocol's episodes per task (LIBERO: 50 init states) means the gate cannot resolve that drop there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scipy.stats import norm

from mibot_eval.config import load_checkpoints, load_suite
from mibot_eval.errors import UserError
from mibot_eval.results.stats import exact

NEVER = None  # no finite number of episodes reaches the power


@dataclass(frozen=True)
class TaskPlan:
    suite: str
    task: str
    rate: float  # baseline success (fraction)
    discordance: float | None  # paired only
    baseline_n: int | None  # unpaired against a fixed baseline (the release's n); None otherwise
    catch: Size  # episodes to flag a drop of this task


@dataclass(frozen=True)
class SuitePlan:
    suite: str
    tasks: list[TaskPlan]
    margin: float  # pp
    protocol_per_task: int | None
    catch: Size  # episodes per task to flag a drop of the whole suite
    passes: Size  # episodes per task to show "not worse" when nothing changed


@dataclass(frozen=True)
class Plan:
    baseline: str
    mode: str  # paired | unpaired against the release's logs | against reported figures
    drop: float
    power: float
    alpha: float
    rows: int
    suites: list[SuitePlan]


def _z(p: float) -> float:
    return float(norm.ppf(p))


def _paired_n(q: float, drop: float, margin: float, alpha: float, power: float) -> int | None:
    """Normal approximation: pairs so that a true drop `drop` (discordance q under it) is flagged at
    `margin` (fractions; drop > margin); the test's null variance is estimated from the data, so it
    is taken at the same discordance."""
    if drop <= margin:
        return NEVER
    sd0 = math.sqrt(max(max(q, margin) - margin * margin, 1e-12))
    sd1 = math.sqrt(max(q - drop * drop, 1e-12))
    return math.ceil(((_z(1 - alpha) * sd0 + _z(power) * sd1) / (drop - margin)) ** 2)


def _paired_pass(q: float, margin: float, alpha: float, power: float) -> int | None:
    """Normal approximation: pairs so that no change (discordance q) is shown within `margin`."""
    if margin <= 0:
        return NEVER
    sd0 = math.sqrt(max(max(q, margin) - margin * margin, 1e-12))
    sd1 = math.sqrt(max(q, 1e-12))
    return math.ceil(((_z(1 - alpha) * sd0 + _z(power) * sd1) / margin) ** 2)


def _unpaired_n(rate: float, drop: float, margin: float, alpha: float, power: float,
                baseline_n: int | None) -> int | None:
    """Normal approximation: candidate episodes against a fixed baseline sample (baseline_n; None: a
    figure taken as exact) so that a true gap `drop` is declared beyond `margin` (drop > margin), or
    with drop 0 and margin > 0, so that no change is shown within the margin."""
    gap = abs(drop - margin)
    if gap <= 0 or (drop > 0 and drop <= margin):
        return NEVER
    cand = min(max(rate - drop, 1e-3), 1 - 1e-3)
    base = min(max(rate, 1e-3), 1 - 1e-3)
    need = (gap / (_z(1 - alpha) + _z(power))) ** 2
    rest = need - (0.0 if baseline_n is None else base * (1 - base) / baseline_n)
    return NEVER if rest <= 0 else math.ceil(cand * (1 - cand) / rest)


@dataclass(frozen=True)
class Size:
    """Episodes needed: exact (bisection on the exact power of results/stats/exact.py, within the
    protocol's size), or 'more than the protocol has' with the normal approximation beside it."""

    n: int | None  # None: never
    exact: bool
    cap: int | None = None  # the protocol's size when n exceeds it

    def per_task(self, tasks: int) -> Size:
        return Size(None if self.n is None else math.ceil(self.n / max(tasks, 1)), self.exact,
                    None if self.cap is None else self.cap // max(tasks, 1))


def _exact_size(power_at: Callable[[int], float], target: float, cap: int, approx: int | None) -> Size:
    """The smallest n <= cap whose exact power reaches target (bisection; exact power is not quite
    monotone in n, by discreteness), else the normal approximation marked as beyond the cap."""
    if approx is None:
        return Size(None, False)
    if power_at(cap) < target:
        return Size(max(approx, cap + 1), False, cap)
    low, high = 1, cap
    while low < high:
        mid = (low + high) // 2
        if power_at(mid) >= target:
            high = mid
        else:
            low = mid + 1
    return Size(low, True)


def _margin(suite: str, max_drop: float | None) -> float:
    if max_drop is not None:
        return max_drop
    try:
        value = load_suite(suite).max_drop
    except UserError:
        value = None
    return 0.0 if value is None else value


def _protocol_per_task(suite: str) -> int | None:
    """Independent trials per task the protocol has (WidowX: its unique episodes, not the copies)."""
    try:
        protocol = load_suite(suite)
    except UserError:
        return None
    listed = protocol.params.get("tasks")
    if isinstance(listed, list) and listed and all(isinstance(t, dict) and "unique" in t for t in listed):
        return min(int(t["unique"]) for t in listed)
    return protocol.episodes_per_task


EXACT_LIMIT = 2000  # the largest sample the exact power is computed for (O(n^2) tables)


def _search(power_at: Callable[[int], float], target: float, cap: int | None,
            approx: int | None) -> Size:
    if approx is None:
        return Size(None, False)
    if cap is None or cap > EXACT_LIMIT:
        over = cap is not None and approx > cap
        return Size(approx, False, cap if over else None)
    return _exact_size(power_at, target, cap, approx)


def plan_gate(baseline: str, drop: float, power: float = 0.8, alpha: float = 0.05,
              max_drop: float | None = None, discordance: float | None = None,
              suites: Sequence[str] = ()) -> Plan:
    """The plan (module docstring); drop and max_drop in percentage points."""
    if not 0 < drop < 100:
        raise UserError(f"--drop must be in (0, 100) percentage points, got {drop}")
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise UserError("--power and --alpha must be between 0 and 1")
    if discordance is not None and not 0 <= discordance <= 1:
        raise UserError(f"--discordance must be a share in [0, 1], got {discordance}")
    rates, mode, counts = _baseline_rates(baseline, suites)
    rows = sum(len(t) + 1 for t in rates.values()) + (1 if len(rates) > 1 else 0)
    level = alpha / rows
    d = drop / 100
    out = []
    for suite, tasks in rates.items():
        margin = _margin(suite, max_drop)
        m = margin / 100
        per_task = _protocol_per_task(suite)
        suite_cap = None if per_task is None else per_task * len(tasks)
        task_plans = []
        qs = []
        for task, rate in tasks.items():
            n_base = counts.get((suite, task))
            if mode == "paired":
                q = discordance if discordance is not None else 2 * rate * (1 - rate)
                qs.append(q)
                catch = _search(_catch_power(m, level, d, q), power, per_task,
                                _paired_n(q + d, d, m, level, power))
                task_plans.append(TaskPlan(suite, task, rate, q, None, catch))
            else:
                catch = _unpaired_size(rate, d, m, level, power, n_base, per_task)
                task_plans.append(TaskPlan(suite, task, rate, None, n_base, catch))
        mean_rate = sum(tasks.values()) / len(tasks)
        if mode == "paired":
            q = sum(qs) / len(qs)
            suite_catch = _search(_catch_power(m, level, d, q), power, suite_cap,
                                  _paired_n(q + d, d, m, level, power))
            suite_pass = NEVER_SIZE if m <= 0 else _search(
                partial(_pass_power, margin=m, alpha=alpha, discordance=q), power, suite_cap,
                _paired_pass(q, m, alpha, power))
        else:
            total = [counts.get((suite, t)) for t in tasks]
            base_total = None if any(n is None for n in total) else sum(n or 0 for n in total)
            suite_catch = _unpaired_size(mean_rate, d, m, level, power, base_total, suite_cap)
            suite_pass = _unpaired_size(mean_rate, 0.0, m, alpha, power, base_total, suite_cap)
        out.append(SuitePlan(suite, task_plans, margin, per_task, suite_catch.per_task(len(tasks)),
                             suite_pass.per_task(len(tasks))))
    return Plan(baseline, mode, drop, power, alpha, rows, out)


NEVER_SIZE = Size(None, False)


def _catch_power(margin: float, alpha: float, drop: float, discordance: float) -> Callable[[int], float]:
    """n -> exact power of the paired test to flag `drop` (the discordance grows by the drop)."""
    return partial(exact.paired_power, margin=margin, alpha=alpha, theta=drop,
                   discordance=discordance + drop)


def _pass_power(n: int, margin: float, alpha: float, discordance: float) -> float:
    return exact.paired_power(n, margin, alpha, 0.0, discordance, regressed=False)


def _unpaired_size(rate: float, drop: float, margin: float, alpha: float, power: float,
                   baseline_n: int | None, cap: int | None) -> Size:
    approx = _unpaired_n(rate, drop, margin, alpha, power, baseline_n)
    if baseline_n is None or baseline_n > EXACT_LIMIT:  # a figure taken as exact: normal only
        return _search(lambda n: 0.0, power, None, approx) if cap is None else Size(
            approx, False, cap if approx is not None and approx > cap else None)
    regressed = drop > 0
    return _search(lambda n: exact.unpaired_power(n, baseline_n, margin, alpha, rate, drop, regressed),
                   power, cap, approx)


def _baseline_rates(baseline: str, suites: Sequence[str]
                    ) -> tuple[dict[str, dict[str, float]], str, dict[tuple[str, str], int]]:
    """suite -> task -> baseline rate, the comparison mode, and the baseline's n per task where it
    is fixed (the release's logs)."""
    path = Path(baseline)
    if path.is_dir() or (Path("results") / baseline).is_dir():
        from mibot_eval.results.measure.gate import resolve_run
        from mibot_eval.results.measure.summary import load_run

        summary = load_run(resolve_run(baseline))
        chosen = [s for s in summary.suites if not suites or s in suites]
        rates = {s: {k: t.rate.successes / t.rate.n for k, t in summary.suites[s].tasks.items() if t.rate.n}
                 for s in chosen}
        rates = {s: r for s, r in rates.items() if r}
        if not rates:
            raise UserError(f"{baseline}: no measured task in the chosen suites")
        return rates, "paired", {}
    checkpoints = load_checkpoints()
    if baseline not in checkpoints:
        raise UserError(f"--baseline {baseline}: neither a run folder nor a checkpoints.yaml entry "
                        f"(known: {', '.join(checkpoints)})")
    info = checkpoints[baseline]
    chosen = [s for s in info.suites if not suites or s in suites]
    from mibot_eval.results.measure.release_baseline import load_release_baseline
    from mibot_eval.results.measure.release_compare import release_summary

    logs = load_release_baseline()
    logged = [s for s in chosen if s in logs.suites() and logs.checkpoint(s) == baseline]
    rates: dict[str, dict[str, float]] = {}
    counts: dict[tuple[str, str], int] = {}
    if logged:
        release = release_summary(logged)
        for s in logged:
            for key, task in release.suites[s].tasks.items():
                if task.rate.n:
                    rates.setdefault(s, {})[key] = task.rate.successes / task.rate.n
                    counts[(s, key)] = task.rate.n
    for s in chosen:
        if s not in rates and "success" in info.reported.get(s, {}):
            rates[s] = {"all tasks": float(info.reported[s]["success"]) / 100}
    if not rates:
        raise UserError(f"--baseline {baseline}: no logged outcomes or reported suite rates for "
                        f"{', '.join(chosen) or 'its suites'}")
    mode = "unpaired against the release's logs" if logged else "against reported figures (taken as exact)"
    return rates, mode, counts
