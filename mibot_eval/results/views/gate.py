"""The regression gate's result as text (`mibot-eval check`): the rule, the margins, one markdown row
per compared number (verdict, difference with its interval and method, margin, detectable drop,
tests and p-values), the notes and the RESULT line (measure/gate.py decides; this only renders)."""

from __future__ import annotations

from mibot_eval.results.measure.gate import GateResult
from mibot_eval.results.measure.gate_rows import INCONCLUSIVE, NOT_WORSE, REGRESSED, Check
from mibot_eval.results.numbers import fmt, fmt_ci
from mibot_eval.results.views.tables import markdown_table

LABELS = {REGRESSED: "REGRESSED", NOT_WORSE: "not worse", INCONCLUSIVE: "inconclusive", "": "info"}


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
