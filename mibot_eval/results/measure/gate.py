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

Tests (stats/differences.py, stats/exact.py; the rows: measure/gate_rows.py):
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
    them (measure/reported.py); otherwise against the figure taken as exact (exact binomial test for
    a rate, MOVER for an average), as the row's note says.
  CALVIN avg_len is shown, not tested: it is the sum of the chain rates, which are.
  Trials are independent trials: an errored episode is a failure (as the release counts it), WidowX
  repeats count once (a unit whose copies split in half is a failure in pairs, stats/paired.py).
Refused (exit 2): a suite whose protocol differs (protocol hash: max steps, replan steps, seed...),
a different execution (sync: mode and replan steps; async: every setting), different episodes per
task, a suite the baseline lacks; against `reported` / `release`, a protocol that is not the
official YAML's; `reported` for a checkpoint without reported numbers (use --reference NAME).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from mibot_eval import exit_codes
from mibot_eval.config import load_aggregates
from mibot_eval.errors import UserError
from mibot_eval.results.measure.gate_rounds import replay_recorded
from mibot_eval.results.measure.gate_rows import (
    INCONCLUSIVE,
    NOT_WORSE,
    REGRESSED,
    Check,
    Margins,
    against_reported,
    against_run,
    official_problems,
    refuse,
)
from mibot_eval.results.measure.summary import RunSummary, load_run
from mibot_eval.results.stats.holm import holm
from mibot_eval.results.stats.sequential import SequentialGate

CORRECTIONS = ("holm", "none")


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
        checks, notes = against_reported(cand, margins, value)
        label = f"reported numbers of {cand.reported_source}"
    elif kind == "release":
        from mibot_eval.results.measure.release_compare import release_summary

        problems, notes = official_problems(cand)
        refuse(problems, "the release's protocol")
        base = release_summary(list(cand.suites))
        missing = [s for s in cand.suites if s not in base.suites]
        if missing:
            notes.append(f"not logged by the release, not compared: {', '.join(missing)}")
        cand_logged = replace(cand, suites={k: v for k, v in cand.suites.items() if k in base.suites})
        # the release's logs name SimplerEnv episodes (pairable); LIBERO trials and CALVIN sequences
        # are not identified in them, so those are compared as independent samples
        episodic = {n for n, s in cand_logged.suites.items() if s.benchmark == "simpler"}
        more_checks, more_notes = against_run(cand_logged, base, margins, same_episodes=False,
                                               pairable=episodic)
        checks, notes = more_checks, notes + more_notes
        label = "the release's logged outcomes (mibot_eval/data/release)"
    else:
        base = load_run(resolve_run(value or ""), rules)
        checks, notes = against_run(cand, base, margins)
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
