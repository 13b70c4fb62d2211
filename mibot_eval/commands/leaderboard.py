"""`mibot-eval leaderboard [RESULTS_DIR]`: rebuild the leaderboard (long CSV, pivot, published figures,
optionally markdown, charts and the HTML page) from every run's recorded episodes."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leaderboard", help="rebuild the leaderboard from every run's recorded episodes",
        description="One row per (checkpoint, suite, protocol), rebuilt from RESULTS_DIR/*/episodes.jsonl; "
        "columns are documented in mibot_eval/results/measure/leaderboard.py (LeaderboardRow). Also writes "
        "the pivot (one row per checkpoint and execution mode, one column per benchmark headline) as "
        "<CSV stem>_pivot.csv and the figures other models' authors reported (never measured here) as "
        "published.csv, both beside the CSV. Prints the markdown: the long table, the pivot, then the "
        "published figures.",
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
    from mibot_eval.results.measure.pooling import run_dirs
    from mibot_eval.results.views.charts import chart_png
    from mibot_eval.results.views.leaderboard import PUBLISHED_FILE, pivot_path, rebuild
    from mibot_eval.results.views.pivot import build_pivot

    csv_path = args.output or args.results_dir / "leaderboard.csv"
    rows, markdown = rebuild(args.results_dir, csv_path, args.markdown, args.png, args.pivot_png)
    if args.html is not None:
        from mibot_eval.results.measure.published import published_frame
        from mibot_eval.results.measure.summary import load_run
        from mibot_eval.results.views.html import write_html

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
