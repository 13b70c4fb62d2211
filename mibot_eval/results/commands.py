"""CLI subcommands over recorded results: report, leaderboard, check (regression gate), plan-gate
(sizing a gate), robustness.

`register(subparsers)` adds them to the `mibot-eval` parser; each handler returns an exit code and
raises UserError for bad input (printed by the CLI as one line, exit 2). This is where the results
views meet: `publish_run` writes a run's report and updates its leaderboard rows; the leaderboard
command also writes the HTML page. report, leaderboard and html never import one another.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    _add_report(subparsers)
    _add_leaderboard(subparsers)
    _add_check(subparsers)
    _add_plan_gate(subparsers)
    _add_robustness(subparsers)


def _add_report(sub: argparse._SubParsersAction) -> None:
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


def publish_run(run_dir: Path, leaderboard_csv: Path | None = None, compare_with: str | None = None) -> str:
    """The run's report (written beside it) and, unless leaderboard_csv is None, its leaderboard rows
    upserted there (pooled with sibling runs of the same checkpoint). Returns the markdown."""
    from mibot_eval.results.report import report_run

    text = report_run(run_dir, compare_with=compare_with)
    if leaderboard_csv is not None:
        from mibot_eval.results.leaderboard import update_for_run

        update_for_run(Path(run_dir), Path(leaderboard_csv))
    return text


def _cmd_report(args: argparse.Namespace) -> int:
    from mibot_eval.errors import UserError

    if not args.run_dir.is_dir():
        raise UserError(f"{args.run_dir}: run folder not found")
    csv_path = None if args.no_leaderboard else (args.leaderboard or args.run_dir.parent / "leaderboard.csv")
    print(publish_run(args.run_dir, csv_path, args.compare_with), end="")
    return 0


def _add_leaderboard(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard", help="rebuild the leaderboard from every run's recorded episodes",
        description="One row per (checkpoint, suite, protocol), rebuilt from RESULTS_DIR/*/episodes.jsonl; "
        "columns are documented in mibot_eval/results/leaderboard.py. Also writes the pivot (one row per "
        "checkpoint and execution mode, one column per benchmark headline) as <CSV stem>_pivot.csv and "
        "the figures other models' authors reported (never measured here) as published.csv, both beside "
        "the CSV. Prints the markdown: the long table, the pivot, then the published figures.",
    )
    p.add_argument("results_dir", type=Path, nargs="?", default=Path("results"), metavar="RESULTS_DIR",
                   help="folder of run folders (default: results)")
    p.add_argument("-o", "--output", type=Path, default=None, metavar="CSV",
                   help="CSV to write (default: RESULTS_DIR/leaderboard.csv)")
    p.add_argument("--markdown", type=Path, default=None, metavar="PATH",
                   help="also write the markdown (long table, pivot, published figures)")
    p.add_argument("--png", type=Path, default=None, metavar="PATH",
                   help="also write a bar chart with interval whiskers")
    p.add_argument("--pivot-png", type=Path, default=None, metavar="PATH",
                   help="also write the pivot as a colored grid (value [95%% CI], partial in grey)")
    p.add_argument("--html", type=Path, default=None, metavar="DIR",
                   help="also write a self-contained DIR/index.html (opens offline)")
    p.set_defaults(handler=_cmd_leaderboard)


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from mibot_eval.results.leaderboard import (
        PUBLISHED_FILE,
        build_pivot,
        chart_png,
        pivot_path,
        rebuild,
        run_dirs,
    )

    csv_path = args.output or args.results_dir / "leaderboard.csv"
    rows, markdown = rebuild(args.results_dir, csv_path, args.markdown, args.png, args.pivot_png)
    if args.html is not None:
        from mibot_eval.results.html import write_html
        from mibot_eval.results.published import published_frame
        from mibot_eval.results.summary import load_run

        runs = [load_run(d) for d in run_dirs(args.results_dir)]
        write_html(args.html, rows, runs, markdown, chart_png(rows),
                   pivot=build_pivot(rows).frame.to_dict("records"),
                   published=published_frame().to_dict("records"))
    print(markdown, end="")
    written = [str(csv_path), str(pivot_path(csv_path)), str(csv_path.with_name(PUBLISHED_FILE))]
    written += [str(p) for p in (args.markdown, args.png, args.pivot_png) if p is not None]
    if args.html is not None:
        written.append(str(args.html / "index.html"))
    print(f"{len(rows)} rows; wrote {', '.join(written)}")
    return 0


def _add_check(sub: argparse._SubParsersAction) -> None:
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
    from mibot_eval.results.gate import check_regression, render_gate

    result = check_regression(args.candidate, args.baseline, max_drop=args.max_drop,
                              alpha=args.alpha, correction=args.correction, reference=args.reference)
    print(render_gate(result), end="")
    return result.exit_code


def _add_plan_gate(sub: argparse._SubParsersAction) -> None:
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
    from mibot_eval.results.plan_gate import plan_gate, render_plan

    plan = plan_gate(args.baseline, args.drop, power=args.power, alpha=args.alpha,
                     max_drop=args.max_drop, discordance=args.discordance, suites=args.suites)
    print(render_plan(plan), end="")
    return 0


def _add_robustness(sub: argparse._SubParsersAction) -> None:
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
    from mibot_eval.results.robustness import build_report, write_report

    report = build_report(args.clean, args.variant)
    output = args.output or report.variant_runs[0] / "robustness.md"
    text, md, csv_path = write_report(report, output)
    print(text, end="")
    print(f"wrote {md}, {csv_path}")
    return 0
