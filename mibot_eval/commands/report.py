"""`mibot-eval report RUN_DIR`: a run's markdown report (also report.md and report.csv beside it) and its
rows in the leaderboard CSV."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="markdown report of a run (also writes report.md, report.csv)",
        description="Measure a run's recorded episodes: per-task and per-suite success with Wilson "
        "95% intervals, aggregates, comparison with the reported numbers, errors, seconds per "
        "episode. Writes report.md and report.csv in the run folder and updates the run's rows in "
        "the leaderboard CSV (default: leaderboard.csv next to the run folder).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="results/<run> folder")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--leaderboard", type=Path, default=None, metavar="PATH",
                       help="leaderboard CSV to update (default: RUN_DIR/../leaderboard.csv)")
    group.add_argument("--no-leaderboard", action="store_true", help="do not touch any leaderboard")
    p.add_argument("--compare-with", default=None, metavar="NAME",
                   help="compare with the reported numbers of this checkpoints.yaml entry "
                   "(default: the run's own checkpoint)")
    p.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from mibot_eval.errors import UserError
    from mibot_eval.results.views.publish import publish_run

    if not args.run_dir.is_dir():
        raise UserError(f"{args.run_dir}: run folder not found")
    csv_path = None if args.no_leaderboard else (args.leaderboard or args.run_dir.parent / "leaderboard.csv")
    print(publish_run(args.run_dir, csv_path, args.compare_with), end="")
    return 0
