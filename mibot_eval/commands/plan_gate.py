"""`mibot-eval plan-gate`: the episodes per task a regression gate needs, before it runs."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan-gate", help="episodes per task a regression gate needs to catch a drop (before running)",
        description="Size a CI gate before it runs: for the check you will run (margin: --max-drop, "
        "else each suite YAML's gate.max_drop), the episodes per task needed to declare a true drop of "
        "--drop percentage points regressed (one task, or a whole suite) and to show a candidate with no "
        "real change not worse, with the given power. Baseline: a run folder (paired; uses its task "
        "rates and a discordance) or a checkpoints.yaml name (the release's logged episodes, else its "
        "reported rates). See docs/regression-gate.md (how to measure discordance).",
    )
    p.add_argument("--baseline", required=True, metavar="RUN|NAME",
                   help="baseline run folder, or a checkpoints.yaml entry")
    p.add_argument("--drop", type=float, required=True, metavar="PP",
                   help="the true drop to catch, in percentage points")
    p.add_argument("--power", type=float, default=0.8, help="probability of catching it (default 0.8)")
    p.add_argument("--alpha", type=float, default=0.05, help="the gate's error level (default 0.05)")
    p.add_argument("--max-drop", type=float, default=None, metavar="PP",
                   help="the margin check will use (default: each suite YAML's gate.max_drop)")
    p.add_argument("--discordance", type=float, default=None, metavar="Q",
                   help="share of episodes whose outcome differs between two runs of the same "
                   "checkpoint (default: 2 p (1 - p) per task); measure it by rerunning the baseline")
    p.add_argument("--suites", type=lambda t: [s for s in t.split(",") if s], default=[],
                   help="comma-separated suites (default: all of the baseline's)")
    p.set_defaults(handler=_cmd_plan_gate)


def _cmd_plan_gate(args: argparse.Namespace) -> int:
    from mibot_eval.results.measure.plan_gate import plan_gate
    from mibot_eval.results.views.plan_gate import render_plan

    plan = plan_gate(args.baseline, args.drop, power=args.power, alpha=args.alpha,
                     max_drop=args.max_drop, discordance=args.discordance, suites=args.suites)
    print(render_plan(plan), end="")
    return 0
