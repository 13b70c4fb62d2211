"""Regression gate: is a candidate run significantly worse than a baseline run or the release?

    mibot-eval check --candidate RUN --baseline RUN|reported|release [--max-drop PP] [--alpha A]
                     [--correction holm|none]

Exit 0: not significantly worse anywhere. Exit 1: a table names each suite/task that regressed.
Exit 2: refused (protocol mismatch, missing data, bad input), with one clear line.

The rule. For every compared number, H0 "candidate >= baseline - max_drop" is tested one-sided:
  * baseline RUN: per task (same task id) and per suite (success pooled over the tasks both runs
    measured; CALVIN: chain_1..chain_L over common sequences, and each subtask's success among
    attempts) with the Newcombe hybrid-score interval for the difference of two proportions,
    inverted into a p-value (the upper one-sided bound of candidate - baseline lies below
    -max_drop exactly when p < alpha).
  * baseline `release`: the release's own logged outcomes (mibot_eval/data/release), measured like a
    run and compared as a baseline RUN, per task and per suite (CALVIN: chain rates over all
    sequences of each side: the release's logs do not say which sequence had which length).
    The candidate's protocol must be the official one; it may have fewer episodes than the release.
  * baseline `reported` (the candidate checkpoint's numbers in checkpoints.yaml): rates (suite
    success, a task, a CALVIN chain_k) with the one-sided Wilson score test against the fixed
    rate reported - max_drop; averages (libero.average, a SimplerEnv suite average) with the
    seeded bootstrap of the release's aggregation rule (p = share of replicates >= the threshold).
    CALVIN avg_len is shown but not tested: it is the sum of the tested chain rates.
  Trials are independent trials: an errored episode is a failure (as the release counts it), WidowX
  repeats count once.
  The p-values of one check form one family: Holm's step-down adjustment (default) keeps the
  chance of any false alarm at alpha across all suites and tasks (--correction none tests each at
  alpha). A regression is an adjusted p-value below alpha, so it is always an observed drop
  larger than max_drop; a real drop measured on few episodes may still pass (low power: size the
  CI run to the drop that matters).
Refused (exit 2): a suite whose protocol differs (protocol hash: max steps, replan steps, seed...),
a different execution (sync: mode and replan steps; async: every setting), different episodes per
task, or a suite the baseline lacks. Against `reported`, the suite protocol must be the official
YAML's and the execution its mode; a run with fewer episodes than the protocol is compared on what
it measured and marked partial.

CI example (GitHub Actions; see docs/regression-gate.md):

    name: regression-gate
    on: [pull_request]
    jobs:
      libero-gate:
        runs-on: [self-hosted, gpu]
        steps:
          - uses: actions/checkout@v4
          - run: make setup
          - name: Evaluate the candidate (2 tasks x 10 episodes per suite)
            run: >
              .venv/bin/mibot-eval run --checkpoint ${{ vars.CANDIDATE_CHECKPOINT }}
              --suites libero_spatial,libero_object --tasks 0,1 --episodes 10
              --run candidate --no-report
          - name: Fetch the baseline run recorded on main
            run: mkdir -p results && cp -r /srv/mibot-eval/baselines/libero_main results/baseline
          - name: Gate
            run: >
              .venv/bin/mibot-eval check --candidate results/candidate
              --baseline results/baseline --max-drop 5 --alpha 0.05
          - if: always()
            uses: actions/upload-artifact@v4
            with: {name: gate-results, path: results/candidate}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.config import load_suite
from mibot_eval.errors import UserError
from mibot_eval.results.gate_rounds import replay_recorded
from mibot_eval.results.paired import (
    Pair,
    PairCounts,
    mean_of_suites_difference,
    pair_units,
    paired_bootstrap,
)
from mibot_eval.results.sequential import SequentialGate
from mibot_eval.results.stats import (
    BOOTSTRAP_REPLICATES,
    BOOTSTRAP_SEED,
    Rate,
    holm,
    p_bootstrap_below,
    p_worse_than_rate,
    p_worse_than_run,
)
from mibot_eval.results.summary import (
    RunSummary,
    compare_reported,
    execution_identity,
    execution_label,
    fmt,
    load_aggregates,
    load_run,
)

CORRECTIONS = ("holm", "none")


@dataclass
class Check:
    """One compared number; p_value None means shown, not tested."""

    scope: str  # suite | task | aggregate
    suite: str
    name: str  # task name, or the metric for suites/aggregates
    metric: str
    candidate: float | None
    baseline: float | None
    n_candidate: int = 0
    n_baseline: int | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    regressed: bool = False
    note: str = ""
    test: str = ""  # which test produced p_value (paired / unpaired / score / bootstrap)

    @property
    def diff(self) -> float | None:
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate - self.baseline

    @property
    def label(self) -> str:
        return f"{self.suite} {self.scope} {self.name}" if self.scope == "task" else (
            f"{self.suite} {self.metric}")


@dataclass
class GateResult:
    candidate: str
    baseline: str
    max_drop: float
    alpha: float
    correction: str
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    sequential: SequentialGate | None = None  # a run stopped early by `run --gate-against`

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regressed]

    @property
    def exit_code(self) -> int:
        if self.sequential is not None and self.sequential.decision is not None:
            return 1 if self.sequential.decision == "regressed" else 0
        return 1 if self.regressions else 0


def resolve_run(text: str | Path) -> Path:
    """A run folder path, or a run name under ./results."""
    path = Path(text)
    for candidate in (path, Path("results") / path):
        if candidate.is_dir():
            return candidate
    raise UserError(f"run folder '{text}' not found (give a path like results/<run>)")


def check_regression(
    candidate: str | Path, baseline: str | Path, max_drop: float = 0.0, alpha: float = 0.05,
    correction: str = "holm",
) -> GateResult:
    """Compare candidate with a baseline run or with 'reported'; never raises for a regression."""
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {alpha}")
    if max_drop < 0:
        raise UserError(f"--max-drop must be >= 0 percentage points, got {max_drop}")
    if correction not in CORRECTIONS:
        raise UserError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    rules = load_aggregates()
    cand = load_run(resolve_run(candidate), rules)
    if not any(s.trials for s in cand.suites.values()):
        raise UserError(f"{cand.run_dir}: the candidate has no finished episodes to compare")
    if str(baseline) == "reported":
        checks, notes = _against_reported(cand, max_drop)
        label = f"reported numbers of {cand.checkpoint}"
    elif str(baseline) == "release":
        from mibot_eval.results.release_compare import release_summary

        problems, notes = _official_problems(cand)
        _refuse(problems, "the release's protocol")
        base = release_summary(list(cand.suites))
        missing = [s for s in cand.suites if s not in base.suites]
        if missing:
            notes.append(f"not logged by the release, not compared: {', '.join(missing)}")
        cand_logged = _restrict(cand, base.suites)
        # the release's logs name SimplerEnv episodes (pairable); LIBERO trials and CALVIN sequences
        # are not identified in them, so those are compared as independent samples
        episodic = {n for n, s in cand_logged.suites.items() if s.benchmark == "simpler"}
        more_checks, more_notes = _against_run(cand_logged, base, max_drop, same_episodes=False,
                                               pairable=episodic)
        checks, notes = more_checks, notes + more_notes
        label = "the release's logged outcomes (mibot_eval/data/release)"
    else:
        base = load_run(resolve_run(baseline), rules)
        checks, notes = _against_run(cand, base, max_drop)
        label = str(base.run_dir)
    tested = [c for c in checks if c.p_value is not None]
    if not tested:
        raise UserError("nothing to compare: no suite or task measured by both sides")
    raw = [1.0 if c.p_value is None else c.p_value for c in tested]
    adjusted = holm(raw) if correction == "holm" else raw
    for check, p in zip(tested, adjusted, strict=True):
        check.p_adjusted = p
        check.regressed = p < alpha
    partial = [s.name for s in cand.suites.values() if s.partial]
    if partial:
        notes.append(f"candidate is partial for {', '.join(partial)}: compared on what it measured")
    sequential = None
    if str(baseline) not in ("reported", "release"):
        sequential = _sequential_verdict(cand, base)
        if sequential is not None:
            notes.append("the candidate ran under the sequential gate (`run --gate-against`); its "
                         f"verdict decides: {sequential.decision} after {sequential.decided_at} matched "
                         "episodes; the fixed-N tests above are shown for information")
    return GateResult(str(cand.run_dir), label, max_drop, alpha, correction, checks, notes, sequential)


def _sequential_verdict(cand: RunSummary, base: RunSummary) -> SequentialGate | None:
    """Replay the sequential gate a gated candidate ran (its recorded settings and rounds, against
    this baseline): the same verdict the run stopped on."""
    info = cand.manifest.get("gate") or {}
    if not info.get("decision") or Path(str(info.get("baseline"))).resolve() != base.run_dir.resolve():
        return None
    return replay_recorded(info, cand.records, base.records)


# -- protocol identity ---------------------------------------------------------------------------
def _field_diffs(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if k not in ("name", "source") and a.get(k) != b.get(k))
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in keys)


def _protocol_problems(cand: RunSummary, base: RunSummary) -> list[str]:
    problems = []
    if execution_identity(cand.execution) != execution_identity(base.execution):
        problems.append(f"execution {execution_label(cand.execution)} vs {execution_label(base.execution)}")
    for suite in cand.suites:
        if suite not in base.suites:
            problems.append(f"{suite}: not in the baseline run")
            continue
        mine, theirs = cand.protocols.get(suite, {}), base.protocols.get(suite, {})
        if mine.get("hash") != theirs.get("hash"):
            detail = _field_diffs(mine.get("protocol") or {}, theirs.get("protocol") or {})
            problems.append(f"{suite}: protocol {mine.get('hash')} vs {theirs.get('hash')}"
                            + (f" ({detail})" if detail else ""))
        if cand.episodes_per_task(suite) != base.episodes_per_task(suite):
            problems.append(f"{suite}: episodes per task {cand.episodes_per_task(suite)} vs "
                            f"{base.episodes_per_task(suite)}")
    return problems


def _official_problems(cand: RunSummary) -> tuple[list[str], list[str]]:
    problems, notes = [], []
    for suite in cand.suites:
        try:
            official = load_suite(suite)
        except UserError:
            notes.append(f"{suite}: no suite YAML here, protocol not checked against the official one")
            continue
        mine = cand.protocols.get(suite, {})
        if mine.get("hash") and mine["hash"] != official.protocol_hash():
            detail = _field_diffs(mine.get("protocol") or {}, official.as_dict())
            problems.append(f"{suite}: protocol {mine['hash']} is not the official "
                            f"{official.protocol_hash()}" + (f" ({detail})" if detail else ""))
        mode = cand.execution.get("mode")
        if mode is not None and mode != official.execution:
            problems.append(f"{suite}: execution {mode} is not the official {official.execution}")
    return problems, notes


def _refuse(problems: list[str], against: str) -> None:
    if problems:
        raise UserError(f"protocol mismatch with {against}, refusing to compare: " + "; ".join(problems))


# -- comparisons ----------------------------------------------------------------------------------
def _pair(scope: str, suite: str, name: str, metric: str, c: Rate, b: Rate, margin: float) -> Check:
    """Unpaired: two independent samples, the Newcombe interval inverted."""
    return Check(scope, suite, name, metric, c.value, b.value, c.n, b.n,
                 p_worse_than_run(c.successes, c.n, b.successes, b.n, margin / 100),
                 test="unpaired: Newcombe")


def _restrict(summary: RunSummary, suites: Mapping[str, Any]) -> RunSummary:
    """The summary with only the given suites (and no aggregate)."""
    from dataclasses import replace

    return replace(summary, suites={k: v for k, v in summary.suites.items() if k in suites}, aggregates=[])


def _against_run(cand: RunSummary, base: RunSummary, max_drop: float, same_episodes: bool = True,
                 pairable: set[str] | None = None) -> tuple[list[Check], list[str]]:
    """Candidate vs a baseline run. Matched episodes (same key and protocol hash) are compared
    paired: exact McNemar per task and per suite, paired bootstrap for aggregates and CALVIN's
    average length; what is not matched falls back to the unpaired Newcombe test.

    same_episodes False (the release): no episodes-per-task check, CALVIN over all sequences;
    pairable: the suites whose episodes may be matched (default: all)."""
    if same_episodes:
        _refuse(_protocol_problems(cand, base), f"baseline {base.run_dir}")
    hashes = {name: (cand.protocols.get(name, {}).get("hash"), base.protocols.get(name, {}).get("hash"))
              for name in cand.suites if pairable is None or name in pairable}
    pairs = pair_units(cand.records, base.records, hashes)
    by_suite: dict[str, list[Pair]] = {}
    for pair in pairs:
        by_suite.setdefault(pair.suite, []).append(pair)
    checks: list[Check] = []
    notes: list[str] = []
    for name, mine in cand.suites.items():
        theirs = base.suites[name]
        if not mine.trials or not theirs.trials:
            side = "the candidate" if not mine.trials else "the baseline"
            notes.append(f"{name}: no episodes on {side}'s side, not compared")
            continue
        matched = by_suite.get(name, [])
        if mine.chain is not None and theirs.chain is not None:
            checks += _chain_checks(name, mine, theirs, matched, max_drop, same_episodes)
            continue
        common_tasks = [k for k in mine.tasks if k in theirs.tasks and mine.tasks[k].units
                        and theirs.tasks[k].units]
        only = sorted(set(mine.tasks) ^ set(theirs.tasks))
        if only:
            notes.append(f"{name}: tasks measured by one side only, not compared: {', '.join(only)}")
        for key in common_tasks:
            task = mine.tasks[key]
            label = f"{key} ({task.name})" if key != task.name else key
            task_pairs = [p for p in matched if p.task == key]
            if task_pairs:
                checks.append(_paired("task", name, label, "success", task_pairs, max_drop))
            else:
                checks.append(_pair("task", name, label, "success", task.rate, theirs.tasks[key].rate,
                                    max_drop))
        if common_tasks:
            suite_pairs = [p for p in matched if p.task in common_tasks]
            checks.append(_paired("suite", name, "success", "success", suite_pairs, max_drop) if suite_pairs
                          else _pair("suite", name, "success", "success", mine.pooled(common_tasks),
                                     theirs.pooled(common_tasks), max_drop))
    checks += _aggregate_checks(cand, base, by_suite, max_drop)
    return checks, notes


def _paired(scope: str, suite: str, name: str, metric: str, pairs: list[Pair], margin: float) -> Check:
    counts = PairCounts.of(pairs)
    cand = 100 * (counts.both + counts.cand_only) / counts.n
    base = 100 * (counts.both + counts.base_only) / counts.n
    return Check(scope, suite, name, metric, cand, base, counts.n, counts.n, counts.p_worse(margin / 100),
                 test="paired: exact McNemar", note=counts.note)


def _chain_checks(name: str, mine: Any, theirs: Any, matched: list[Pair], max_drop: float,
                  same_episodes: bool) -> list[Check]:
    """CALVIN: chain_k paired over matched sequences (McNemar on 'completed >= k'), the average
    length by a paired bootstrap over sequences; unpaired when no sequence is matched."""
    keys = [p.key for p in matched]
    if keys and same_episodes:
        out = []
        for k in range(1, mine.chain.length + 1):
            pairs = [Pair(name, p.task, p.key, float(mine.chain.completed[p.key] >= k),
                          float(theirs.chain.completed[p.key] >= k)) for p in matched]
            out.append(_paired("suite", name, f"chain_{k}", f"chain_{k}", pairs, max_drop))
        lengths = np.array([[mine.chain.completed[k], theirs.chain.completed[k]] for k in keys], float)
        rng = np.random.Generator(np.random.PCG64(BOOTSTRAP_SEED))
        draws = rng.integers(0, len(keys), size=(BOOTSTRAP_REPLICATES, len(keys)))
        diffs = (lengths[draws, 0] - lengths[draws, 1]).mean(axis=1)
        margin = mine.chain.length * max_drop / 100  # the same tolerance on each chain rate
        out.append(Check("suite", name, "avg_len", "avg_len", float(lengths[:, 0].mean()),
                         float(lengths[:, 1].mean()), len(keys), len(keys),
                         p_bootstrap_below(diffs, -margin), test="paired bootstrap over sequences",
                         note=f"margin {margin:g} subtasks"))
        return out
    common = None
    return [_pair("suite", name, f"chain_{k}", f"chain_{k}", c, b, max_drop)
            for k, (c, b) in enumerate(zip(mine.chain.rates(common), theirs.chain.rates(common),
                                           strict=True), start=1)]


def _aggregate_checks(cand: RunSummary, base: RunSummary, by_suite: dict[str, list[Pair]],
                      max_drop: float) -> list[Check]:
    """mean_of_suites averages (e.g. LIBERO's) over matched episodes of every member suite."""
    out = []
    for rule in load_aggregates():
        if rule.rule != "mean_of_suites" or not all(by_suite.get(s) for s in rule.suites):
            continue
        pairs = [p for s in rule.suites for p in by_suite[s]]
        observed, samples = paired_bootstrap(pairs, mean_of_suites_difference(rule.suites))
        cand_value = next((e.value for e in cand.aggregates if (e.key, e.metric) == (rule.key, rule.name)),
                          None)
        base_value = None if cand_value is None else cand_value - observed
        out.append(Check("aggregate", rule.key, rule.name, rule.name, cand_value, base_value, len(pairs),
                         len(pairs), p_bootstrap_below(samples, -max_drop),
                         test="paired bootstrap over episodes", note=f"matched episodes: {len(pairs)}"))
    return out


def _against_reported(cand: RunSummary, max_drop: float) -> tuple[list[Check], list[str]]:
    if not cand.reported:
        raise UserError(f"no reported numbers for checkpoint '{cand.checkpoint}' in checkpoints.yaml; "
                        f"use --baseline RUN")
    problems, notes = _official_problems(cand)
    _refuse(problems, "the release's protocol")
    checks = []
    for comparison in compare_reported(cand):
        estimate = comparison.measured
        key, metric, reported = comparison.key, comparison.metric, comparison.reported
        scope = "aggregate" if key not in cand.suites else (
            "task" if estimate is not None and metric not in ("success", "average", "avg_len")
            and not metric.startswith("chain_") else "suite")
        check = Check(scope, key, metric, metric, None if estimate is None else estimate.value,
                      reported, 0 if estimate is None else estimate.n)
        if estimate is None or estimate.value is None:
            check.note = "not measured" + (f": {estimate.note}" if estimate and estimate.note else "")
        elif metric == "avg_len":
            check.note = "shown, not tested (sum of the chain rates)"
        elif estimate.rate is not None:
            check.p_value = p_worse_than_rate(estimate.rate.successes, estimate.rate.n,
                                              (reported - max_drop) / 100)
            check.test = "score test vs a fixed rate"
        elif estimate.samples is not None:
            check.p_value = p_bootstrap_below(estimate.samples, reported - max_drop)
            check.test = "bootstrap vs a fixed value"
        if estimate is not None and estimate.partial:
            check.note = (check.note + "; " if check.note else "") + "partial"
        checks.append(check)
    return checks, notes


# -- rendering ------------------------------------------------------------------------------------
def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def render_gate(result: GateResult) -> str:
    tested = sum(1 for c in result.checks if c.p_value is not None)
    correction = "Holm-adjusted" if result.correction == "holm" else "unadjusted"
    lines = [f"Regression gate: candidate {result.candidate} vs {result.baseline}",
             f"Rule: regression = one-sided test rejects 'candidate >= baseline - {result.max_drop:g} pp'"
             f" at alpha {result.alpha:g} ({correction} over {tested} comparisons).", ""]
    header = ("status", "suite", "task / metric", "candidate", "baseline", "diff (pp)", "n cand",
              "n base", "test", "p", "p adj", "note")
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    order = sorted(result.checks, key=lambda c: (not c.regressed, c.suite, c.scope != "suite", c.name))
    for c in order:
        status = "REGRESSED" if c.regressed else ("ok" if c.p_value is not None else "info")
        cells = (status, c.suite, c.name, fmt(c.candidate, c.metric), fmt(c.baseline, c.metric),
                 fmt(c.diff, c.metric), c.n_candidate, "–" if c.n_baseline is None else c.n_baseline,
                 c.test or "–", _p(c.p_value), _p(c.p_adjusted), c.note)
        lines.append("| " + " | ".join(str(x) for x in cells) + " |")
    lines += [""] + [f"note: {n}" for n in result.notes]
    seq = result.sequential
    if seq is not None and seq.decision is not None:
        verdict = ("FAIL, regressed" if seq.decision == "regressed" else
                   f"PASS, not worse than the baseline by more than {100 * seq.max_drop:g} pp")
        lines.append(f"RESULT: {verdict} (sequential paired gate, alpha {seq.alpha:g}, decided after "
                     f"{seq.decided_at} matched episodes)")
    elif result.regressions:
        names = "; ".join(f"{c.label} ({fmt(c.diff, c.metric)} pp)" for c in result.regressions)
        lines.append(f"RESULT: FAIL, {len(result.regressions)} regression(s): {names}")
    else:
        lines.append("RESULT: PASS, no suite or task is significantly worse than the baseline")
    return "\n".join(lines) + "\n"
