"""Regression gate: is a candidate run worse than a baseline run, the release, or reported numbers?

    mibot-eval check --candidate RUN --baseline RUN|release|reported[:NAME] [--reference NAME]
                     [--max-drop PP] [--alpha A] [--correction holm|none]

Every compared number (a row: a task, a suite, an average) ends with one of three verdicts, at its
margin D (percentage points; the suite YAML's `gate.max_drop`, or --max-drop for every row):
  regressed     "candidate < baseline - D" is shown: the one-sided test of H0 "candidate >= baseline
                - D" rejects at alpha, Holm-adjusted over every tested row (--correction none: each
                row alone)
  not worse     "candidate > baseline - D" is shown: the one-sided test of H0 "candidate <= baseline
                - D" rejects at alpha (unadjusted, see below)
  inconclusive  neither: the row could not tell; its detectable drop says what it could have seen.
Each row also shows the difference with its 95% interval (method named) and its detectable drop:
the smallest true drop its regression test flags with 80% power at the level Holm's first step
needs (alpha / number of tested rows), at the row's n and observed discordance.

The run's verdict (exit code, mibot_eval/exit_codes.py):
  regressed (1)     any row is regressed (family-wise error at most alpha when nothing dropped by
                    more than its margin);
  not worse (0)     no row regressed and every suite and aggregate row is shown not worse. This is an
                    intersection-union test (R. L. Berger, Technometrics 24, 1982): the claim "no
                    suite or aggregate is worse by more than its margin" is wrong with probability at
                    most alpha, with no adjustment. Task rows screen for regressions but do not have
                    to be shown not worse (a task's 50 episodes cannot show a few points);
  inconclusive (3)  otherwise.
A candidate run stopped early by `run --gate-against` (its plan still incomplete) takes the
sequential test's verdict instead (replayed from the records); once it is completed, the fixed-N
verdict decides.

Tests (results/differences.py, results/exact.py):
  * baseline RUN: episodes with the same key and protocol hash are pairs. A task (or suite) whose
    candidate episodes all have a baseline counterpart is compared paired (exact McNemar at margin
    0; above, the exact unconditional test ordered by Tango's statistic; Tango's interval); one with
    any unmatched candidate episode is compared as two independent samples on all episodes (exact
    unconditional test ordered by the Farrington-Manning statistic; MOVER interval over both rates'
    Clopper-Pearson intervals), so no candidate episode is dropped. CALVIN chain_k rates the same,
    per sequence. Averages of suites (LIBERO's) and SimplerEnv's averages of task groups: MOVER over
    the members' paired differences (Tango intervals) when every member is paired, else over both
    sides' rates (Clopper-Pearson).
  * baseline `release`: the release's logged outcomes (mibot_eval/data/release) measured like a run;
    SimplerEnv episodes pair by their index in the official list, LIBERO and CALVIN do not (the logs
    do not name trials / sequences). The candidate's protocol must be the official one.
  * baseline `reported` (the candidate checkpoint's numbers in checkpoints.yaml) or
    `reported:NAME` / `--reference NAME` (another entry's, e.g. a fine-tune against
    Xiaomi-Robotics-0-LIBERO): where the release's logs hold the reported number, two-sample against
    them (results/reported.py); otherwise against the figure taken as exact (exact binomial test for
    a rate, MOVER for an average), as the row's note says.
  CALVIN avg_len is shown, not tested: it is the sum of the chain rates, which are.
  Trials are independent trials: an errored episode is a failure (as the release counts it), WidowX
  repeats count once (a unit whose copies split in half is a failure in pairs, results/paired.py).
Refused (exit 2): a suite whose protocol differs (protocol hash: max steps, replan steps, seed...),
a different execution (sync: mode and replan steps; async: every setting), different episodes per
task, a suite the baseline lacks; against `reported` / `release`, a protocol that is not the
official YAML's; `reported` for a checkpoint without reported numbers (use --reference NAME).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mibot_eval import exit_codes
from mibot_eval.config import load_suite
from mibot_eval.errors import UserError
from mibot_eval.results import differences
from mibot_eval.results.differences import Difference
from mibot_eval.results.gate_rounds import replay_recorded
from mibot_eval.results.intervals import MOVER_METHOD, PAIRED_MOVER_METHOD, paired_term
from mibot_eval.results.paired import Pair, PairCounts, pair_units
from mibot_eval.results.reported import EXACT_FIGURE, TWO_SAMPLE, difference_to_reported, member_suites
from mibot_eval.results.sequential import SequentialGate
from mibot_eval.results.stats import AggregateRule, Estimate, Rate, SuiteStats, holm
from mibot_eval.results.summary import (
    RunSummary,
    compare_reported,
    execution_identity,
    execution_label,
    fmt,
    fmt_ci,
    load_aggregates,
    load_run,
    markdown_table,
)

CORRECTIONS = ("holm", "none")
REGRESSED, NOT_WORSE, INCONCLUSIVE = "regressed", "not_worse", "inconclusive"
LABELS = {REGRESSED: "REGRESSED", NOT_WORSE: "not worse", INCONCLUSIVE: "inconclusive", "": "info"}


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


@dataclass
class GateResult:
    candidate: str
    baseline: str
    max_drop: float | None  # --max-drop, or None: each suite YAML's gate.max_drop
    alpha: float
    correction: str
    checks: list[Check]
    notes: list[str] = field(default_factory=list)
    sequential: SequentialGate | None = None  # a run stopped early by `run --gate-against`
    margins: dict[str, str] = field(default_factory=dict)  # suite -> "3 pp (suite YAML)"

    @property
    def regressions(self) -> list[Check]:
        return [c for c in self.checks if c.regressed]

    @property
    def unshown(self) -> list[Check]:
        """Suite and aggregate rows not shown not worse (what keeps the run inconclusive)."""
        return [c for c in self.checks if c.tested and c.headline and c.verdict != NOT_WORSE]

    @property
    def fixed_verdict(self) -> str:
        """The fixed-N tests' verdict for the run (module docstring)."""
        if self.regressions:
            return REGRESSED
        headline = [c for c in self.checks if c.tested and c.headline]
        return NOT_WORSE if headline and not self.unshown else INCONCLUSIVE

    @property
    def verdict(self) -> str:
        if self.sequential is not None and self.sequential.decision is not None:
            return self.sequential.decision
        return self.fixed_verdict

    @property
    def exit_code(self) -> int:
        return exit_codes.for_verdict(self.verdict)


def resolve_run(text: str | Path) -> Path:
    """A run folder path, or a run name under ./results."""
    path = Path(text)
    for candidate in (path, Path("results") / path):
        if candidate.is_dir():
            return candidate
    raise UserError(f"run folder '{text}' not found (give a path like results/<run>)")


def parse_baseline(baseline: str | Path | None, reference: str | None) -> tuple[str, str | None]:
    """('reported', NAME or None) | ('release', None) | ('run', path) from --baseline / --reference."""
    text = None if baseline is None else str(baseline)
    if reference is not None:
        if text not in (None, "reported", f"reported:{reference}"):
            raise UserError(f"--reference {reference} compares with reported numbers: it cannot be "
                            f"combined with --baseline {text}")
        return "reported", reference
    if text is None:
        raise UserError("give --baseline RUN|release|reported or --reference NAME")
    if text == "reported" or text.startswith("reported:"):
        name = text.partition(":")[2] or None
        return "reported", name
    if text == "release":
        return "release", None
    return "run", text


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


def check_regression(
    candidate: str | Path, baseline: str | Path | None, max_drop: float | None = None,
    alpha: float = 0.05, correction: str = "holm", reference: str | None = None,
) -> GateResult:
    """Compare candidate with a baseline run, the release or reported numbers; never raises for a
    regression (see GateResult.verdict)."""
    if not 0 < alpha < 1:
        raise UserError(f"--alpha must be between 0 and 1, got {alpha}")
    if max_drop is not None and not 0 <= max_drop < 100:
        raise UserError(f"--max-drop must be in [0, 100) percentage points, got {max_drop}")
    if correction not in CORRECTIONS:
        raise UserError(f"--correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    kind, value = parse_baseline(baseline, reference)
    rules = load_aggregates()
    cand = load_run(resolve_run(candidate), rules,
                    compare_with=value if kind == "reported" else None)
    if not any(s.trials for s in cand.suites.values()):
        raise UserError(f"{cand.run_dir}: the candidate has no finished episodes to compare")
    margins = Margins(max_drop)
    sequential = None
    if kind == "reported":
        checks, notes = _against_reported(cand, margins, value)
        label = f"reported numbers of {cand.reported_source}"
    elif kind == "release":
        from mibot_eval.results.release_compare import release_summary

        problems, notes = _official_problems(cand)
        _refuse(problems, "the release's protocol")
        base = release_summary(list(cand.suites))
        missing = [s for s in cand.suites if s not in base.suites]
        if missing:
            notes.append(f"not logged by the release, not compared: {', '.join(missing)}")
        cand_logged = replace(cand, suites={k: v for k, v in cand.suites.items() if k in base.suites})
        # the release's logs name SimplerEnv episodes (pairable); LIBERO trials and CALVIN sequences
        # are not identified in them, so those are compared as independent samples
        episodic = {n for n, s in cand_logged.suites.items() if s.benchmark == "simpler"}
        more_checks, more_notes = _against_run(cand_logged, base, margins, same_episodes=False,
                                               pairable=episodic)
        checks, notes = more_checks, notes + more_notes
        label = "the release's logged outcomes (mibot_eval/data/release)"
    else:
        base = load_run(resolve_run(value or ""), rules)
        checks, notes = _against_run(cand, base, margins)
        label = str(base.run_dir)
        sequential, note = _sequential_verdict(cand, base)
        if note:
            notes.append(note)
    tested = [c for c in checks if c.tested]
    if not tested:
        raise UserError("nothing to compare: no suite or task measured by both sides")
    _decide(tested, alpha, correction)
    partial = [s.name for s in cand.suites.values() if s.partial]
    if partial:
        notes.append(f"candidate is partial for {', '.join(partial)}: compared on what it measured")
    return GateResult(str(cand.run_dir), label, max_drop, alpha, correction, checks, notes, sequential,
                      dict(margins.sources))


def _decide(tested: Sequence[Check], alpha: float, correction: str) -> None:
    """Each row's verdict: regressed (adjusted p < alpha), else not worse (p < alpha), else
    inconclusive; and its detectable drop at Holm's first-step level."""
    raw = [c.difference.p_regressed for c in tested if c.difference is not None]
    adjusted = holm(raw) if correction == "holm" else raw
    level = alpha / len(tested) if correction == "holm" else alpha
    for check, p in zip(tested, adjusted, strict=True):
        assert check.difference is not None
        check.p_adjusted = p
        if p < alpha:
            check.verdict = REGRESSED
        elif check.difference.p_not_worse < alpha:
            check.verdict = NOT_WORSE
        else:
            check.verdict = INCONCLUSIVE
        check.detectable = check.difference.detectable(level)


def _sequential_verdict(cand: RunSummary, base: RunSummary) -> tuple[SequentialGate | None, str]:
    """The sequential gate a gated candidate stopped on, replayed (its recorded settings, its recorded
    rounds, against this baseline), when the candidate is still the stopped run: once it has
    its plan's episodes (rerun to completion), the fixed-N verdict decides."""
    info = cand.manifest.get("gate") or {}
    if not info.get("decision") or Path(str(info.get("baseline"))).resolve() != base.run_dir.resolve():
        return None, ""
    planned = info.get("planned_episodes")
    recorded = len(cand.records)
    if not info.get("stopped_early") or (isinstance(planned, int) and recorded >= planned):
        return None, (f"the run's sequential verdict ({info['decision']} after {info.get('decided_at')} "
                      f"matched episodes) is not used: the run has {recorded} of its plan's "
                      f"{planned} episodes, so the fixed-N tests decide")
    gate = replay_recorded(info, cand.records, base.records)
    if gate is None or gate.decision is None:
        return None, ""
    return gate, ("the candidate stopped early under the sequential gate (`run --gate-against`, "
                  f"{recorded} of {planned} planned episodes); its verdict decides: {gate.decision} "
                  f"after {gate.decided_at} matched episodes; the fixed-N rows are shown for information")


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


# -- comparisons with a run -------------------------------------------------------------------------
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


def _against_run(cand: RunSummary, base: RunSummary, margins: Margins, same_episodes: bool = True,
                 pairable: set[str] | None = None) -> tuple[list[Check], list[str]]:
    """Candidate vs a baseline run (module docstring). same_episodes False (the release): no
    episodes-per-task check; pairable: the suites whose episodes may be matched (default: all)."""
    if same_episodes:
        _refuse(_protocol_problems(cand, base), f"baseline {base.run_dir}")
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


# -- comparisons with reported numbers ------------------------------------------------------------
def _against_reported(cand: RunSummary, margins: Margins, reference: str | None
                      ) -> tuple[list[Check], list[str]]:
    if not cand.reported:
        if reference is None:
            raise UserError(f"no reported numbers for checkpoint '{cand.checkpoint}' in checkpoints.yaml; "
                            "to gate it against a listed checkpoint's reported numbers use --reference NAME "
                            "(e.g. --reference Xiaomi-Robotics-0-LIBERO), or --baseline RUN")
        raise UserError(f"--reference {reference}: no reported numbers in checkpoints.yaml")
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


# -- rendering ------------------------------------------------------------------------------------
def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _drop(value: float | None, metric: str, tested: bool) -> str:
    if not tested:
        return "–"
    return "none <= 100 pp" if value is None else fmt(value, metric)


ORDER: dict[str, int] = {REGRESSED: 0, INCONCLUSIVE: 1, NOT_WORSE: 2, "": 3}


def render_gate(result: GateResult) -> str:
    tested = [c for c in result.checks if c.tested]
    holm_text = (f"Holm-adjusted over the {len(tested)} tested rows" if result.correction == "holm"
                 else "unadjusted (--correction none)")
    level = result.alpha / len(tested) if result.correction == "holm" and tested else result.alpha
    margins = "; ".join(f"{s}: {m}" for s, m in sorted(result.margins.items()))
    lines = [
        f"Regression gate: candidate {result.candidate} vs {result.baseline}",
        f"Rule: each row tests one-sided at alpha {result.alpha:g} 'regressed' (candidate < baseline - "
        f"margin; p {holm_text}) and 'not worse' (candidate > baseline - margin); neither shown: "
        "inconclusive. The run is regressed if any row is, not worse if no row is and every suite and "
        "aggregate row is shown not worse (intersection-union test, no adjustment needed), else "
        "inconclusive.",
        f"Margins: {margins or '–'}.",
        f"Detectable drop: the smallest true drop the row's regression test flags with 80% power at "
        f"level {level:.3g} (Holm's first step), at the row's n and observed discordance. 95% intervals "
        "of the difference, method per row.", ""]
    header = ("verdict", "suite", "task / metric", "candidate", "baseline", "diff", "95% CI of diff",
              "CI method", "margin", "detectable drop", "n cand", "n base", "test", "p regressed",
              "p adj", "p not worse", "note")
    order = sorted(result.checks, key=lambda c: (ORDER[c.verdict], c.suite, c.scope != "suite", c.name))
    rows = []
    for c in order:
        d = c.difference
        rows.append((LABELS[c.verdict], c.suite, c.name, fmt(c.candidate, c.metric),
                     fmt(c.baseline, c.metric),
                     fmt(c.diff, c.metric), "–" if d is None else fmt_ci(d.low, d.high, c.metric),
                     "–" if d is None else d.interval, "–" if c.margin is None else fmt(c.margin, c.metric),
                     _drop(c.detectable, c.metric, c.tested), c.n_candidate,
                     "–" if c.n_baseline is None else c.n_baseline, c.test or "–", _p(c.p_value),
                     _p(c.p_adjusted), _p(c.p_not_worse), c.note))
    lines += markdown_table(header, rows)
    lines += [""] + [f"note: {n}" for n in result.notes]
    lines.append(_result_line(result))
    return "\n".join(lines) + "\n"


def _row_summary(c: Check, with_drop: bool) -> str:
    d = c.difference
    text = f"{c.label} ({fmt(c.diff, c.metric)} pp"
    if d is not None:
        text += f", 95% CI {fmt_ci(d.low, d.high, c.metric)}"
    if with_drop:
        text += (f", margin {fmt(c.margin, c.metric)}, detectable drop "
                 f"{_drop(c.detectable, c.metric, True)} at n {c.n_candidate}")
    return text + ")"


def _result_line(result: GateResult) -> str:
    seq = result.sequential
    if seq is not None and seq.decision is not None:
        text = ("REGRESSED" if seq.decision == REGRESSED else
                f"NOT WORSE than the baseline by more than {100 * seq.max_drop:g} pp")
        return (f"RESULT: {text} (sequential paired gate, alpha {seq.alpha:g}, decided after "
                f"{seq.decided_at} matched episodes)")
    verdict = result.fixed_verdict
    if verdict == REGRESSED:
        names = "; ".join(_row_summary(c, False) for c in result.regressions)
        return f"RESULT: REGRESSED, {len(result.regressions)} row(s) worse by more than their margin: {names}"
    if verdict == NOT_WORSE:
        return ("RESULT: NOT WORSE: every suite and aggregate row is shown within its margin and no row "
                "regressed")
    unshown = result.unshown
    names = "; ".join(_row_summary(c, True) for c in unshown)
    return (f"RESULT: INCONCLUSIVE: no row is shown worse by more than its margin, but {len(unshown)} suite "
            f"or aggregate row(s) are not shown within it: {names}. A larger run can decide "
            "(`mibot-eval plan-gate`).")
