"""The report of a recorded run: tables, partial marking, errors apart, reported comparison, files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mibot_eval.config import checkpoints_file, load_aggregates
from mibot_eval.errors import UserError
from mibot_eval.results.measure.summary import compare_reported, execution_label, full_count, load_run
from mibot_eval.results.views.publish import publish_run
from mibot_eval.results.views.report import report_run
from tests.data.fixtures import chain_records, copy_recorded, libero_run, official, task_records, write_run


@pytest.fixture()
def partial_run(tmp_path) -> Path:
    """The recorded fixture: libero_spatial tasks 0-1, 10 episodes each; task 1 has 2 errors."""
    return copy_recorded("libero_partial", tmp_path / "results")


def test_report_of_a_partial_run_with_errors(partial_run) -> None:
    text = report_run(partial_run)
    # Clopper-Pearson intervals, the method named in the tables' headers
    assert "| task | name | success % | 95% CI (Clopper-Pearson) |" in text
    assert "| 0 | pick_up_the_black_bowl_on_the_plate | 70.0 | [34.8, 93.3] | 7 / 10 | 0 |" in text
    # task 1: 5 successes in 8 ok episodes + 2 errors, which count as failures (as in the release)
    assert "| 1 | pick_up_the_black_bowl_next_to_the_ramekin | 50.0 | [18.7, 81.3] | 5 / 10 | 2 |" in text
    assert "| libero_spatial | 60.0 | [36.1, 80.9] | 12 / 20 | 18 | 2 | 4.0% |" in text
    assert "status: **PARTIAL**" in text and "partial: 20/500 episodes (4.0% of the protocol)" in text
    assert "2 episode(s) ended with an error" in text and "libero_spatial/1/8" in text
    # the LIBERO average is never averaged over a subset of its suites
    assert "| libero | average | – |" in text and "missing suite(s): libero_object" in text
    # against the release's 494 / 500 (two-sample), not against 98.8 taken as exact
    assert ("| libero_spatial | success | 98.8 | 500 | 60.0 | 20 | -38.8 | [-62.8, -17.9] | MOVER "
            "(Clopper-Pearson terms) | unpaired: exact unconditional (Farrington-Manning order) | <0.0001 | "
            "**no** | partial") in text
    assert "| libero_spatial | 20 | 2.00 | 0.50 | 1.00 | 0.25 | 0.25 |" in text  # seconds per episode
    assert (partial_run / "report.md").read_text() == text
    rows = list(csv.DictReader((partial_run / "report.csv").open()))
    suite_row = next(r for r in rows if r["scope"] == "suite")
    assert suite_row["value"] == "60.0" and suite_row["errors"] == "2" and suite_row["partial"] == "true"
    assert suite_row["reported"] == "98.8" and suite_row["consistent_with_reported"] == "false"
    assert [r["task"] for r in rows if r["scope"] == "task"] == ["0", "1"]


REPORT_CSV = """\
run,checkpoint,checkpoint_id,scope,suite,task,name,metric,value,ci_low,ci_high,method,n,successes,episodes,\
errors,coverage,partial,reported,delta,consistent_with_reported
libero_partial,Xiaomi-Robotics-0-LIBERO,c0ffee,task,libero_spatial,0,pick_up_the_black_bowl_on_the_plate,\
success,70.0,34.75,93.33,Clopper-Pearson,10,7.0,10,0,,true,,,
libero_partial,Xiaomi-Robotics-0-LIBERO,c0ffee,task,libero_spatial,1,pick_up_the_black_bowl_next_to_the_ramekin,\
success,50.0,18.71,81.29,Clopper-Pearson,10,5.0,8,2,,true,,,
libero_partial,Xiaomi-Robotics-0-LIBERO,c0ffee,suite,libero_spatial,,libero_spatial,success,60.0,36.05,80.88,\
Clopper-Pearson,20,12.0,18,2,4.0,true,98.8,-38.8,false
libero_partial,Xiaomi-Robotics-0-LIBERO,c0ffee,aggregate,libero,,libero,average,,,,\
MOVER (Clopper-Pearson terms),0,,,,,true,98.7,,
"""


def test_report_csv_is_the_frame_in_the_pinned_cell_format(partial_run) -> None:
    """report.csv comes from a pandas DataFrame; its bytes are those the csv-module writer wrote
    (true/false, empty for None, estimates rounded once to 2 decimals)."""
    from mibot_eval.results.views.report import REPORT_COLUMNS, report_frame

    report_run(partial_run)
    assert (partial_run / "report.csv").read_text() == REPORT_CSV
    frame = report_frame(load_run(partial_run))
    assert tuple(frame.columns) == REPORT_COLUMNS and len(frame) == 4


def test_report_updates_leaderboard_idempotently(partial_run) -> None:
    board = partial_run.parent / "leaderboard.csv"
    publish_run(partial_run, board)
    first = board.read_text()
    publish_run(partial_run, board)
    assert board.read_text() == first
    rows = list(csv.DictReader(board.open()))
    # one row for its suite; no LIBERO aggregate row from a run missing three of the four suites
    assert [(r["suite"], r["kind"], r["partial"]) for r in rows] == [("libero_spatial", "suite", "true")]


def test_full_libero_run_matches_reported_average(tmp_path) -> None:
    counts = {"libero_spatial": [50] * 4 + [49] * 6, "libero_object": [50] * 10,
              "libero_goal": [50] * 4 + [49] * 6, "libero_10": [50] * 2 + [49] * 2 + [48] * 6}
    run_dir = libero_run(tmp_path, "full", counts)
    summary = load_run(run_dir)
    assert not any(s.partial for s in summary.suites.values())
    by_metric = {(c.key, c.metric): c for c in compare_reported(summary)}
    assert round(by_metric[("libero_spatial", "success")].measured.value, 1) == 98.8
    assert round(by_metric[("libero_10", "success")].measured.value, 1) == 97.2
    average = by_metric[("libero", "average")]
    assert round(average.measured.value, 1) == 98.7
    assert average.measured.method == "MOVER (Clopper-Pearson terms)" and not average.measured.partial
    text = report_run(run_dir)
    assert "status: complete" in text and "| libero | average | 98.7 |" in text
    # the release's own counts reproduced: every comparison is consistent, two-sample with n 500 / 2000
    assert "| libero | average | 98.7 | 2000 | 98.7 | 2000 | 0.0 |" in text
    assert "| **no** |" not in text


def test_calvin_report_against_reported(tmp_path) -> None:
    completed = [1] * 17 + [2] * 23 + [3] * 34 + [4] * 45 + [5] * 881
    run_dir = write_run(tmp_path, "calvin", "Xiaomi-Robotics-0-Calvin-ABC_D",
                        {"calvin_abc_d": official("calvin_abc_d")},
                        chain_records("calvin_abc_d", completed))
    text = report_run(run_dir)
    for metric, value in [("chain_1", "100.0"), ("chain_5", "88.1"), ("avg_len", "4.75")]:
        delta = "0.00" if metric == "avg_len" else "0.0"
        assert f"| calvin_abc_d | {metric} | {value} | 1000 | {value} | 1000 | {delta} | [" in text
    assert "Clopper-Pearson on avg_len / length (bounded mean)" in text
    assert "### calvin_abc_d (subtask success among attempts)" in text


def test_aggregates_schema_errors_are_one_line(tmp_path) -> None:
    path = tmp_path / "checkpoints.yaml"
    base = checkpoints_file().read_text()
    path.write_text(base.replace("rule: mean_of_suites", "rule: median_of_suites"))
    with pytest.raises(UserError, match=r"aggregates\.libero\.average: unknown rule 'median_of_suites'"):
        load_aggregates(path)
    path.write_text(base.replace("groups: {drawer: [open_drawer, close_drawer]}",
                                 "groups: {drawer: [open_drawer, shut_drawer]}", 1))
    with pytest.raises(UserError, match="member 'shut_drawer' must be listed once in 'tasks'"):
        load_aggregates(path)
    path.write_text("aggregates:\n  libero:\n    average: {rule: mean_of_suites, suites: [a]}\n")
    with pytest.raises(UserError, match="missing 'source'"):
        load_aggregates(path)


def test_not_a_run_folder(tmp_path) -> None:
    with pytest.raises(UserError, match="not a run folder"):
        load_run(tmp_path)


def test_full_protocol_counts_and_execution_identity() -> None:
    assert full_count(official("libero_spatial")["protocol"]) == 500
    assert full_count(official("simpler_google_vm")["protocol"]) == 864  # 300+240+108+108+108
    assert full_count(official("simpler_widowx")["protocol"]) == 576  # 24 unique x 6 repeats x 4
    assert full_count(official("calvin_abc_d")["protocol"]) == 1000
    assert full_count(None) is None
    sync = {"mode": "sync", "replan_steps": 10, "delay_steps": 0, "prefix_supported": True}
    assert execution_label(sync) == "sync,replan_steps=10"
    assert execution_label({"mode": "async", "replan_steps": 4, "delay_steps": 2}) == (
        "async,delay_steps=2,replan_steps=4")


def test_compare_with_another_checkpoints_reported_numbers(tmp_path) -> None:
    counts = {"libero_spatial": [45] * 10}
    run_dir = libero_run(tmp_path, "finetune", counts, checkpoint="my-finetune")
    assert "No reported numbers" in report_run(run_dir)
    text = report_run(run_dir, compare_with="Xiaomi-Robotics-0-LIBERO")
    assert "## Comparison with reported (Xiaomi-Robotics-0-LIBERO)" in text
    assert "| libero_spatial | success | 98.8 | 500 | 90.0 | 500 | -8.8 |" in text
    with pytest.raises(UserError, match="unknown checkpoint 'nope'"):
        load_run(run_dir, compare_with="nope")


def test_report_compares_each_task_with_the_release_logs(tmp_path) -> None:
    counts = [50, 50, 30, 50, 49, 49, 50, 47, 49, 50]  # the release: 50 / 50 on task 2
    text = report_run(libero_run(tmp_path, "r", {"libero_spatial": counts}))
    section = text[text.index("## Comparison with the release's own episodes"):]
    # MOVER over the Clopper-Pearson intervals of 30/50 and 50/50; Holm over 10
    assert ("| 2 (task_2) | 30 / 50 | 50 / 50 | -40.0 | [-54.8, -24.7] | MOVER (Clopper-Pearson terms) | "
            "<0.0001 | **differs** |") in section
    assert "| libero_spatial | 7 (task_7) | 47 / 50 | 47 / 50 | 0.0 |" in section
    assert sum("| **differs** |" in line for line in section.splitlines()) == 1
    assert "Holm-adjusted over the 10 rows" in section


def test_report_shows_episode_agreement_with_the_release_for_simplerenv(tmp_path) -> None:
    from mibot_eval.results.measure.release_baseline import load_release_baseline

    release = load_release_baseline().records("simpler_widowx")[:24]  # the carrot task's first 24
    flipped = {release[0]["key"], release[1]["key"]}
    records = [{**r, "success": (not r["success"]) if r["key"] in flipped else r["success"]}
               for r in release]
    run_dir = write_run(tmp_path, "w", "Xiaomi-Robotics-0-SimplerEnv-WidowX",
                        {"simpler_widowx": official("simpler_widowx")}, records)
    text = report_run(run_dir)
    row = next(line for line in text.splitlines() if line.startswith("| simpler_widowx | 0 "))
    assert "agree 22/24" in row and "disagree 2" in row


def test_report_shows_how_the_robot_moved(tmp_path) -> None:
    records = task_records("libero_spatial", 0, 1, 3)
    for i, rec in enumerate(records):
        rec["metrics"] = {"motion": {"seam_jump_l2": [0.1, 0.2, 0.3][i], "idle_fraction": 0.5,
                                     "time_to_success_s": 2.0 if rec["success"] else None}}
    run_dir = write_run(tmp_path, "m", "tiny", {"libero_spatial": official("libero_spatial")}, records)
    text = report_run(run_dir)
    section = text[text.index("## How the robot moved"):]
    assert r"| libero_spatial | seam jump \|a_t - a_{t-1}\| at chunk switches | 0.2 |" in section
    # one episode: no interval (issue 20 item 9), the method named in the header
    assert "| libero_spatial | time to success (s, successful episodes) | 2 | – (n < 2) | 1 |" in section
    assert "95% CI (bootstrap)" in section
