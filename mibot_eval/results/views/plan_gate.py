"""`mibot-eval plan-gate`'s answer as text: per suite the episodes per task to catch the drop and to
pass an unchanged candidate, per task the episodes to catch it there (measure/plan_gate.py sizes)."""

from __future__ import annotations

from mibot_eval.results.measure.plan_gate import Plan, Size
from mibot_eval.results.views.tables import markdown_table


def _cell(size: Size, protocol: int | None) -> str:
    if size.n is None:
        return "– (never)"
    if size.cap is not None:
        return f"> protocol's {size.cap} (≈ {size.n})"
    return str(size.n) if size.exact else f"≈ {size.n}"


def render_plan(plan: Plan) -> str:
    lines = [f"Gate plan against {plan.baseline} ({plan.mode}): catch a true drop of {plan.drop:g} pp "
             f"with power {plan.power:g}; regression tests at alpha {plan.alpha:g} / {plan.rows} rows "
             f"(Holm's first step), 'not worse' at alpha {plan.alpha:g}. Plain numbers: the smallest size "
             "whose exact power (results/stats/exact.py) reaches the target within the protocol; '≈': a "
             "normal approximation (beyond the protocol or 2000 episodes).", ""]
    lines += markdown_table(
        ("suite", "margin (pp)", "protocol episodes / task", "episodes / task to catch the drop in the "
         "whole suite", "episodes / task to pass an unchanged candidate (not worse)"),
        [(s.suite, f"{s.margin:g}", s.protocol_per_task or "–", _cell(s.catch, s.protocol_per_task),
          _cell(s.passes, s.protocol_per_task)) for s in plan.suites])
    lines += ["", "Per task: episodes to catch the drop in that task alone."
              + (" Discordance: --discordance, else 2 p (1 - p)." if plan.mode == "paired" else ""), ""]
    rows = []
    for s in plan.suites:
        for t in s.tasks:
            extra = (f"{t.discordance:.3f}" if t.discordance is not None
                     else (str(t.baseline_n) if t.baseline_n is not None else "figure taken as exact"))
            rows.append((s.suite, t.task, f"{100 * t.rate:.1f}", extra, _cell(t.catch, s.protocol_per_task)))
    header = "discordance" if plan.mode == "paired" else "baseline n"
    lines += markdown_table(("suite", "task", "baseline %", header, "episodes / task to catch"), rows)
    never = [s.suite for s in plan.suites if s.catch.n is None]
    if never:
        lines += ["", f"'– (never)': a drop of {plan.drop:g} pp is within the margin ({', '.join(never)}), "
                  "or the fixed baseline sample alone is too noisy; gate with `check --max-drop` below the "
                  "drop (plan with the same --max-drop)."]
    return "\n".join(lines) + "\n"
