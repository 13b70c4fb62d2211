"""`mibot-eval check`: the regression gate (regressed: exit 1, not worse: 0, inconclusive: 3, refused: 2)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="regression gate: regressed (exit 1), not worse (0) or inconclusive (3)",
        description="Compare a candidate run with a baseline run, the release's logged episodes or "
        "reported numbers. Every task, suite and average ends as regressed (worse than the baseline by "
        "more than the margin, shown), not worse (within the margin, shown) or inconclusive, with the "
        "difference's 95% interval and the smallest drop the row could detect (80% power). Exit 0 "
        "when the run is not worse, 1 when something regressed, 3 when inconclusive (the run could not "
        "tell: see the detectable drops, and `mibot-eval plan-gate`), 2 when refused (protocols differ, "
        "bad input). Tests: exact paired / unpaired margin tests, MOVER for averages; regression "
        "p-values Holm-adjusted. See docs/regression-gate.md.",
    )
    p.add_argument("--candidate", required=True, metavar="RUN", help="candidate run folder")
    p.add_argument("--baseline", default=None, metavar="RUN|release|reported[:NAME]",
                   help="baseline run folder; 'release' for the release's own logged outcomes; "
                   "'reported' for the candidate checkpoint's numbers in checkpoints.yaml, "
                   "'reported:NAME' for another entry's (same as --reference NAME)")
    p.add_argument("--reference", default=None, metavar="NAME",
                   help="gate against the reported numbers of this checkpoints.yaml entry (e.g. a "
                   "fine-tune against Xiaomi-Robotics-0-LIBERO); implies --baseline reported")
    p.add_argument("--max-drop", type=float, default=None, metavar="PP",
                   help="margin in percentage points for every row (default: each suite YAML's "
                   "gate.max_drop)")
    p.add_argument("--alpha", type=float, default=0.05, metavar="A",
                   help="error level of each verdict (default 0.05)")
    p.add_argument("--correction", choices=("holm", "none"), default="holm",
                   help="adjustment of the regression tests across rows (default holm)")
    p.set_defaults(handler=_cmd_check)


def _cmd_check(args: argparse.Namespace) -> int:
    from mibot_eval.results.measure.gate import check_regression
    from mibot_eval.results.views.gate import render_gate

    result = check_regression(args.candidate, args.baseline, max_drop=args.max_drop,
                              alpha=args.alpha, correction=args.correction, reference=args.reference)
    print(render_gate(result), end="")
    return result.exit_code
