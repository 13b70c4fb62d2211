"""`mibot-eval merge RUN_DIR... -o OUT`: merge run folders (e.g. the shards of `run --shard I/N`)
into one (mibot_eval/run/shard.py does the merging)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mibot_eval import exit_codes
from mibot_eval.run.shard import merge_runs, summary_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="merge run folders (e.g. the shards of `run --shard I/N`) into one",
        description="Merge the episode records of runs of the same experiment (checkpoint, "
        "execution mode and protocols must agree) into OUT. Refuses episodes recorded twice; "
        "reports planned episodes that have no record (shards that were not run or not finished).",
        epilog="exit codes: 0 merged, no planned episode missing; 5 incomplete: some planned "
        "episodes have no record (shards not given or not finished; OUT is written all the same); "
        "2 refused (README: Exit codes)",
    )
    p.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR", help="run folders to merge")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT", help="new run folder")
    p.add_argument("--no-report", action="store_true", help="do not print the report")
    p.set_defaults(handler=_cmd_merge)


def _cmd_merge(args: argparse.Namespace) -> int:
    summary = merge_runs(list(args.run_dirs), args.output)
    print(summary_text(summary))
    if not args.no_report and summary["episodes"]:
        from mibot_eval.results.views.report import report_run

        print(report_run(args.output))
    return exit_codes.INCOMPLETE if summary["missing"] or summary["absent_shards"] else exit_codes.OK
