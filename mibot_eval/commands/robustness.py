"""`mibot-eval robustness`: LIBERO-PRO variants' success next to their clean suites', with the drop."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robustness", help="LIBERO-PRO robustness report: variant vs clean success and the drop",
        description="Per LIBERO-PRO variant suite and task: the variant's success with its Wilson 95% "
        "interval, the clean suite's, and drop = clean - variant (pp) with a Newcombe 95% interval "
        "(unpaired: LIBERO-PRO's variants start from their own init states). Reads recorded runs only. "
        "Prints the markdown and writes it with a CSV beside it. See docs/libero-pro.md.",
    )
    p.add_argument("--clean", required=True, action="append", type=Path, metavar="RUN",
                   help="run folder (or folder of runs) with the clean suites; repeatable")
    p.add_argument("--variant", required=True, action="append", type=Path, metavar="RUN",
                   help="run folder (or folder of runs) with LIBERO-PRO variant suites; repeatable "
                   "(may be the clean run's folder)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="MD",
                   help="markdown to write, CSV beside it (default: robustness.md in the first variant run)")
    p.set_defaults(handler=_cmd_robustness)


def _cmd_robustness(args: argparse.Namespace) -> int:
    from mibot_eval.results.measure.robustness import build_report
    from mibot_eval.results.views.robustness import write_report

    report = build_report(args.clean, args.variant)
    output = args.output or report.variant_runs[0] / "robustness.md"
    text, md, csv_path = write_report(report, output)
    print(text, end="")
    print(f"wrote {md}, {csv_path}")
    return 0
