"""What a finished run publishes: its report beside it and its rows in the leaderboard CSV (pooled with
its sibling runs of the same checkpoint). `run` and `report` call it."""

from __future__ import annotations

from pathlib import Path


def publish_run(run_dir: Path, leaderboard_csv: Path | None = None, compare_with: str | None = None) -> str:
    """The run's report (written beside it) and, unless leaderboard_csv is None, its leaderboard rows
    upserted there (pooled with sibling runs of the same checkpoint). Returns the markdown."""
    from mibot_eval.results.views.report import report_run

    text = report_run(run_dir, compare_with=compare_with)
    if leaderboard_csv is not None:
        from mibot_eval.results.views.leaderboard import update_for_run

        update_for_run(Path(run_dir), Path(leaderboard_csv))
    return text
