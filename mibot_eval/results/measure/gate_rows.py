"""The rows of the regression gate (measure/gate.py says the rules): one Check per compared number
against a baseline run or the release's logged outcomes (`against_run`: paired where every candidate
episode has a counterpart, else unpaired; CALVIN chain rates; averages by MOVER) or against reported
numbers (`against_reported`), each row at its margin (`Margins`); and the protocol identity checks
that refuse a comparison of different experiments (`protocol_problems`, `official_problems`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mibot_eval.config import AggregateRule, load_aggregates, load_suite
from mibot_eval.errors import UserError
from mibot_eval.results.measure.pairs import pair_units
from mibot_eval.results.measure.reported import (
    EXACT_FIGURE,
    TWO_SAMPLE,
    difference_to_reported,
    member_suites,
)
from mibot_eval.results.measure.suites import Estimate, SuiteStats
from mibot_eval.results.measure.summary import (
    RunSummary,
    compare_reported,
    execution_identity,
    execution_label,
)
from mibot_eval.results.stats import differences
from mibot_eval.results.stats.differences import Difference
from mibot_eval.results.stats.intervals import MOVER_METHOD, PAIRED_MOVER_METHOD, paired_term
from mibot_eval.results.stats.paired import Pair, PairCounts
from mibot_eval.results.stats.rates import Rate

REGRESSED, NOT_WORSE, INCONCLUSIVE = "regressed", "not_worse", "inconclusive"


@dataclass
class Check:
    """One compared number; difference None means shown, not tested."""

    scope: str  # suite | task | aggregate
    suite: str
    name: str  # task name, or the metric for suites/aggregates
    metric: str
    candidate: float | None
    baseline: float | None
    n_candidate: int = 0
    n_baseline: int | None = None
    margin: float | None = None  # pp (the metric's unit)
    difference: Difference | None = None
    p_adjusted: float | None = None  # the regression p-value after the family's adjustment
    verdict: str = ""  # regressed | not_worse | inconclusive; "" = shown, not tested
    detectable: float | None = None  # smallest drop flagged with 80% power (metric's unit)
    note: str = ""

    @property
    def tested(self) -> bool:
        return self.difference is not None

    @property
    def p_value(self) -> float | None:
        """The regression test's p-value (H0: candidate >= baseline - margin)."""
        return None if self.difference is None else self.difference.p_regressed

    @property
    def p_not_worse(self) -> float | None:
        return None if self.difference is None else self.difference.p_not_worse

    @property
    def regressed(self) -> bool:
        return self.verdict == REGRESSED

    @property
    def headline(self) -> bool:
        """Suite and aggregate rows: the run is 'not worse' only when each of them is."""
        return self.scope != "task"

    @property
    def test(self) -> str:
        return "" if self.difference is None else self.difference.test

    @property
    def diff(self) -> float | None:
        if self.difference is not None:
            return self.difference.estimate
        if self.candidate is None or self.baseline is None:
            return None
        return self.candidate - self.baseline

    @property
    def label(self) -> str:
        return f"{self.suite} {self.scope} {self.name}" if self.scope == "task" else (
            f"{self.suite} {self.metric}")


class Margins:
    """The margin of each row: --max-drop, else the suite YAML's gate.max_drop (0 without one)."""

    def __init__(self, max_drop: float | None) -> None:
        self.max_drop = max_drop
        self.sources: dict[str, str] = {}

    def suite(self, name: str) -> float:
        if self.max_drop is not None:
            self.sources.setdefault(name, f"{self.max_drop:g} pp (--max-drop)")
            return self.max_drop
        try:
            value = load_suite(name).max_drop
        except UserError:
            value = None
        if value is None:
            self.sources.setdefault(name, "0 pp (no gate.max_drop in a suite YAML: 'not worse' needs the "
                                          "candidate to be significantly better; pass --max-drop)")
            return 0.0
        self.sources.setdefault(name, f"{value:g} pp (suite YAML gate.max_drop)")
        return value

    def key(self, key: str) -> float:
        """A reported key: a suite, or an average of suites (the mean of their margins)."""
        members = member_suites(key)
        return sum(self.suite(s) for s in members) / len(members)


def _field_diffs(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    keys = sorted(k for k in set(a) | set(b) if k not in ("name", "source") and a.get(k) != b.get(k))
    return ", ".join(f"{k} {a.get(k)!r} vs {b.get(k)!r}" for k in keys)


def protocol_problems(cand: RunSummary, base: RunSummary) -> list[str]:
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


def official_problems(cand: RunSummary) -> tuple[list[str], list[str]]:
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


def refuse(problems: list[str], against: str) -> None:
    if problems:
        raise UserError(f"protocol mismatch with {against}, refusing to compare: " + "; ".join(problems))


def _paired_check(scope: str, suite: str, name: str, metric: str, pairs: Sequence[Pair],
                  margin: float) -> Check:
    counts = PairCounts.of(pairs)
    cand = 100 * (counts.both + counts.cand_only) / counts.n
    base = 100 * (counts.both + counts.base_only) / counts.n
    return Check(scope, suite, name, metric, cand, base, counts.n, counts.n, margin,
                 differences.paired(counts, margin), note=counts.note)


def _unpaired_check(scope: str, suite: str, name: str, metric: str, c: Rate, b: Rate, margin: float,
                    note: str = "") -> Check:
    return Check(scope, suite, name, metric, c.value, b.value, c.n, b.n, margin,
                 differences.unpaired(c, b, margin), note=note)


def _unmatched_note(unmatched: int) -> str:
    return (f"{unmatched} candidate episode(s) without a baseline counterpart: compared unpaired, "
            "on all episodes") if unmatched else ""


def against_run(cand: RunSummary, base: RunSummary, margins: Margins, same_episodes: bool = True,
                 pairable: set[str] | None = None) -> tuple[list[Check], list[str]]:
    """Candidate vs a baseline run (module docstring). same_episodes False (the release): no
    episodes-per-task check; pairable: the suites whose episodes may be matched (default: all)."""
    if same_episodes:
        refuse(protocol_problems(cand, base), f"baseline {base.run_dir}")
    hashes = {name: (cand.protocols.get(name, {}).get("hash"), base.protocols.get(name, {}).get("hash"))
              for name in cand.suites if pairable is None or name in pairable}
    by_suite: dict[str, list[Pair]] = {}
    for pair in pair_units(cand.records, base.records, hashes):
        by_suite.setdefault(pair.suite, []).append(pair)
    checks: list[Check] = []
    notes: list[str] = []
    paired_suites: set[str] = set()
    for name, mine in cand.suites.items():
        theirs = base.suites[name]
        if not mine.trials or not theirs.trials:
            side = "the candidate" if not mine.trials else "the baseline"
            notes.append(f"{name}: no episodes on {side}'s side, not compared")
            continue
        margin = margins.suite(name)
        matched = by_suite.get(name, [])
        if mine.chain is not None and theirs.chain is not None:
            checks += _chain_checks(name, mine, theirs, matched, margin)
            continue
        common = [k for k in mine.tasks
                  if k in theirs.tasks and mine.tasks[k].units and theirs.tasks[k].units]
        only = sorted(set(mine.tasks) ^ set(theirs.tasks))
        if only:
            notes.append(f"{name}: tasks measured by one side only, not compared: {', '.join(only)}")
        unmatched_total = 0
        for key in common:
            task = mine.tasks[key]
            label = f"{key} ({task.name})" if key != task.name else key
            task_pairs = [p for p in matched if p.task == key]
            unmatched = len(task.units) - len(task_pairs)
            unmatched_total += unmatched
            if task_pairs and not unmatched:
                checks.append(_paired_check("task", name, label, "success", task_pairs, margin))
            else:
                checks.append(_unpaired_check("task", name, label, "success", task.rate,
                                              theirs.tasks[key].rate, margin,
                                              _unmatched_note(unmatched) if task_pairs else ""))
        if not common:
            continue
        suite_pairs = [p for p in matched if p.task in common]
        if suite_pairs and not unmatched_total:
            checks.append(_paired_check("suite", name, "success", "success", suite_pairs, margin))
            paired_suites.add(name)
        else:
            checks.append(_unpaired_check("suite", name, "success", "success", mine.pooled(common),
                                          theirs.pooled(common), margin,
                                          _unmatched_note(unmatched_total) if suite_pairs else ""))
    checks += _average_checks(cand, base, by_suite, paired_suites, margins)
    return checks, notes


def _chain_checks(name: str, mine: SuiteStats, theirs: SuiteStats, matched: Sequence[Pair],
                  margin: float) -> list[Check]:
    """CALVIN: chain_k paired over matched sequences (on 'completed >= k') when every candidate
    sequence is matched, else unpaired over all sequences; avg_len shown, not tested."""
    assert mine.chain is not None and theirs.chain is not None
    out = []
    complete = bool(matched) and len(matched) == len(mine.chain.completed)
    unmatched = len(mine.chain.completed) - len(matched)
    for k, (c, b) in enumerate(zip(mine.chain.rates(), theirs.chain.rates(), strict=True), start=1):
        if complete:
            pairs = [Pair(name, p.task, p.key, float(mine.chain.completed[p.key] >= k),
                          float(theirs.chain.completed[p.key] >= k)) for p in matched]
            out.append(_paired_check("suite", name, f"chain_{k}", f"chain_{k}", pairs, margin))
        else:
            out.append(_unpaired_check("suite", name, f"chain_{k}", f"chain_{k}", c, b, margin,
                                       _unmatched_note(unmatched) if matched else ""))
    out.append(Check("suite", name, "avg_len", "avg_len", mine.chain.average_length(),
                     theirs.chain.average_length(), len(mine.chain.completed),
                     len(theirs.chain.completed),
                     note="shown, not tested: the sum of the chain rates, which are tested"))
    return out


def _rule_members(rule: AggregateRule, summary: RunSummary) -> list[tuple[str, list[str]]] | None:
    """(suite, task keys) per term of an average rule, None when the summary lacks a member."""
    if rule.rule == "mean_of_suites":
        if not all(s in summary.suites for s in rule.suites):
            return None
        return [(s, list(summary.suites[s].tasks)) for s in rule.suites]
    suite = summary.suites.get(rule.suites[0])
    if suite is None:
        return None
    keys = {t.name: t.key for t in suite.tasks.values()}
    if not all(m in keys for _, members in rule.groups for m in members):
        return None
    return [(suite.name, [keys[m] for m in members]) for _, members in rule.groups]


def _find(estimates: Sequence[Estimate], rule: AggregateRule) -> Estimate | None:
    return next((e for e in estimates if (e.key, e.metric) == (rule.key, rule.name)
                 and e.value is not None and e.terms), None)


def _average_checks(cand: RunSummary, base: RunSummary, by_suite: Mapping[str, Sequence[Pair]],
                    paired_suites: set[str], margins: Margins) -> list[Check]:
    """Averages (LIBERO's mean of suites, SimplerEnv's mean of task groups): MOVER over paired
    differences when every member suite is paired, else over both sides' rates."""
    out = []
    for rule in load_aggregates():
        if rule.rule == "chain_success" or any(s not in cand.suites or s not in base.suites
                                               for s in rule.suites):
            continue
        members = _rule_members(rule, cand)
        mine, theirs = _find(cand.aggregates, rule), _find(base.aggregates, rule)
        if members is None or mine is None or theirs is None:
            continue
        margin = sum(margins.suite(s) for s in rule.suites) / len(rule.suites)
        scope = "aggregate" if rule.rule == "mean_of_suites" else "suite"
        if all(s in paired_suites for s in rule.suites):
            weight = 100.0 / len(members)
            terms = []
            for suite, keys in members:
                counts = PairCounts.of(p for p in by_suite.get(suite, []) if p.task in keys)
                terms.append(paired_term(counts.base_only, counts.cand_only, counts.n, weight))
            difference = differences.linear(terms, [], margin, method=PAIRED_MOVER_METHOD)
            note = f"paired: {sum(len(by_suite.get(s, [])) for s in rule.suites)} matched episodes"
        else:
            difference = differences.linear(mine.terms, theirs.terms, margin, method=MOVER_METHOD)
            note = "unpaired"
        out.append(Check(scope, rule.key, rule.name, rule.name, mine.value, theirs.value, mine.n, theirs.n,
                         margin, difference, note=note))
    return out


def against_reported(cand: RunSummary, margins: Margins, reference: str | None
                      ) -> tuple[list[Check], list[str]]:
    if not cand.reported:
        if reference is None:
            raise UserError(f"no reported numbers for checkpoint '{cand.checkpoint}' in checkpoints.yaml; "
                            "to gate it against a listed checkpoint's reported numbers use --reference NAME "
                            "(e.g. --reference Xiaomi-Robotics-0-LIBERO), or --baseline RUN")
        raise UserError(f"--reference {reference}: no reported numbers in checkpoints.yaml")
    problems, notes = official_problems(cand)
    refuse(problems, "the release's protocol")
    checks = []
    for comparison in compare_reported(cand):
        estimate = comparison.measured
        key, metric, reported = comparison.key, comparison.metric, comparison.reported
        scope = "aggregate" if key not in cand.suites else (
            "task" if estimate is not None and metric not in ("success", "average", "avg_len")
            and not metric.startswith("chain_") else "suite")
        check = Check(scope, key, metric, metric, None if estimate is None else estimate.value,
                      reported, 0 if estimate is None else estimate.n)
        if estimate is None or estimate.value is None or not estimate.terms:
            check.note = "not measured" + (f": {estimate.note}" if estimate and estimate.note else "")
        elif metric == "avg_len":
            check.note = "shown, not tested: the sum of the chain rates, which are tested"
        else:
            check.margin = margins.key(key)
            check.difference, ref = difference_to_reported(estimate, cand.reported_source, key, metric,
                                                           reported, check.margin)
            check.n_baseline = None if ref is None else ref.n
            check.note = TWO_SAMPLE if ref is not None else EXACT_FIGURE
        if estimate is not None and estimate.partial:
            check.note = (check.note + "; " if check.note else "") + "partial"
        checks.append(check)
    return checks, notes
