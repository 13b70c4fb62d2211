"""The leaderboard's pivot of benchmark headlines (markdown, CSV, PNG), its motion columns, and the
figures reported by others (sourced, and never among the measured rows)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mibot_eval.cli import main
from mibot_eval.errors import UserError
from mibot_eval.results.measure.leaderboard import LEADERBOARD_COLUMNS, MOTION_COLUMNS
from mibot_eval.results.measure.published import (
    HEADLINES,
    PUBLISHED_COLUMNS,
    headline,
    load_published,
    parse_figures,
    published_frame,
)
from mibot_eval.results.views.html import published_table
from mibot_eval.results.views.leaderboard import published_markdown, rebuild
from mibot_eval.results.views.pivot import PIVOT_COLUMNS, build_pivot
from tests.data.fixtures import libero_run, official, task_records, write_run

ROOT = Path(__file__).resolve().parents[1]
LIBERO = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
ASYNC = {"mode": "async", "replan_steps": 10, "delay_steps": 2}
VM_TASKS = ("pick_coke_can", "move_near", "open_drawer", "close_drawer", "put_in_drawer")


@pytest.fixture()
def results(tmp_path) -> Path:
    """Full LIBERO (sync), a partial async LIBERO run of the same checkpoint, a partial Google Robot VM
    run, and a LIBERO run with a non-official protocol (max_steps=100)."""
    root = tmp_path / "results"
    counts = {
        "libero_spatial": [50] * 4 + [49] * 6,
        "libero_object": [50] * 10,
        "libero_goal": [50] * 4 + [49] * 6,
        "libero_10": [50] * 2 + [49] * 2 + [48] * 6,
    }
    libero_run(root, "libero_full", counts)
    write_run(
        root,
        "libero_async",
        "Xiaomi-Robotics-0-LIBERO",
        {s: official(s) for s in LIBERO},
        [r for s in LIBERO for r in task_records(s, 0, 4, 5)],
        execution=ASYNC,
    )
    vm = [
        r
        for i, (name, k) in enumerate(zip(VM_TASKS, (9, 8, 7, 8, 6), strict=True))
        for r in task_records("simpler_google_vm", i, k, 10, task_name=name, benchmark="simpler")
    ]
    write_run(
        root,
        "vm",
        "Xiaomi-Robotics-0-SimplerEnv-Google-Robot",
        {"simpler_google_vm": official("simpler_google_vm")},
        vm,
        checkpoint_id="d00d",
    )
    libero_run(
        root, "finetune_max100", {s: [5] for s in LIBERO}, episodes=5, checkpoint="my-finetune", max_steps=100
    )
    return root


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as stream:
        return list(csv.DictReader(stream))


def test_pivot_markdown_csv_and_png(results, tmp_path) -> None:
    png = tmp_path / "pivot.png"
    rows, markdown = rebuild(results, pivot_png_path=png)
    pivot_csv = results / "leaderboard_pivot.csv"
    assert pivot_csv.read_text().splitlines()[0] == ",".join(PIVOT_COLUMNS)
    by = {(r["checkpoint"], r["execution"]): r for r in _csv(pivot_csv)}
    # one row per (checkpoint, execution); the non-official run is in the long table only
    assert sorted(by) == [
        ("Xiaomi-Robotics-0-LIBERO", "async,delay_steps=2,replan_steps=10"),
        ("Xiaomi-Robotics-0-LIBERO", "sync,replan_steps=10"),
        ("Xiaomi-Robotics-0-SimplerEnv-Google-Robot", "sync,replan_steps=10"),
    ]
    assert any(r["checkpoint"] == "my-finetune" and r["suite"] == "libero" for r in rows)
    full = by[("Xiaomi-Robotics-0-LIBERO", "sync,replan_steps=10")]
    assert (
        full["libero_average"],
        full["libero_average_ci_low"],
        full["libero_average_ci_high"],
        full["libero_average_partial"],
    ) == ("98.7", "98.0", "99.11", "false")
    assert all(
        full[c] == ""
        for c in PIVOT_COLUMNS
        if not c.startswith(("libero_average", "checkpoint", "execution"))
    )
    fast = by[("Xiaomi-Robotics-0-LIBERO", "async,delay_steps=2,replan_steps=10")]
    assert fast["libero_average"] == "80.0" and fast["libero_average_partial"] == "true"
    vm = by[("Xiaomi-Robotics-0-SimplerEnv-Google-Robot", "sync,replan_steps=10")]
    # (90 + 80 + (70 + 80) / 2 + 60) / 4, drawer pooled; 50 of 864 episodes
    assert vm["simpler_google_vm_average"] == "76.25" and vm["simpler_google_vm_average_partial"] == "true"
    assert vm["checkpoint_id"] == "d00d" and vm["libero_average"] == ""
    lines = markdown.splitlines()
    start = lines.index("## Pivot: benchmark headlines")
    assert lines[start + 4] == (
        "| checkpoint | execution | LIBERO average (%) | CALVIN ABC→D avg. length | "
        "CALVIN ABCD→D avg. length | Google Robot VM (%) | Google Robot VA (%) | "
        "WidowX (%) |"
    )
    assert "| Xiaomi-Robotics-0-LIBERO | sync,replan_steps=10 | 98.7 [98.0, 99.1] |  |  |  |  |  |" in lines
    async_line = next(line for line in lines if line.startswith("| Xiaomi-Robotics-0-LIBERO | async"))
    assert "| 80.0 [" in async_line and "] (partial) |" in async_line
    assert "| Xiaomi-Robotics-0-SimplerEnv-Google-Robot | sync,replan_steps=10 |  |  |  | 76.2 [" in markdown
    assert "1 headline row(s) with a protocol other than the suite YAML's" in markdown
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    # the pivot is rebuilt identically from the CSV the rows were written to (upsert path)
    again = build_pivot(_csv(results / "leaderboard.csv")).frame
    assert [r["libero_average"] for r in again.to_dict("records")] == [80.0, 98.7, None]


def test_pivot_of_an_empty_leaderboard_is_a_header(tmp_path) -> None:
    pivot = build_pivot([])
    assert pivot.frame.empty and list(pivot.frame.columns) == list(PIVOT_COLUMNS) and pivot.excluded == 0


def _motion(**values: float | None) -> dict[str, float | None]:
    return {c: values.get(c) for c in ("steps", "time_to_success_steps", *MOTION_COLUMNS, "seams")}


def test_motion_columns_are_means_over_episodes_that_have_them(tmp_path) -> None:
    records = task_records("libero_spatial", 0, 2, 3, errors=1)
    records[0]["metrics"]["motion"] = _motion(
        time_to_success_s=2.0,
        seam_jump_l2=0.1,
        inside_jump_l2=0.01,
        jerk_seam_l2=0.3,
        jerk_inside_l2=0.03,
        idle_fraction=0.0,
        gripper_toggles=2,
    )
    records[1]["metrics"]["motion"] = _motion(
        time_to_success_s=None,
        seam_jump_l2=0.2,
        inside_jump_l2=0.02,
        jerk_seam_l2=0.4,
        jerk_inside_l2=0.05,
        idle_fraction=0.1,
        gripper_toggles=3,
    )
    # records[2] has no metrics.motion; the errored episode's motion is not averaged in
    records[3]["metrics"]["motion"] = _motion(seam_jump_l2=100.0, gripper_toggles=100)
    others = [r for s in LIBERO[1:] for r in task_records(s, 0, 1, 1)]
    others[1]["metrics"]["motion"] = _motion(seam_jump_l2=0.6, idle_fraction=0.25)  # libero_goal
    write_run(tmp_path, "m", "Xiaomi-Robotics-0-LIBERO", {s: official(s) for s in LIBERO}, records + others)
    rebuild(tmp_path)
    text = (tmp_path / "leaderboard.csv").read_text()
    assert text.splitlines()[0] == ",".join(LEADERBOARD_COLUMNS)
    assert text.splitlines()[0].endswith(
        ",runs,time_to_success_s,seam_jump_l2,inside_jump_l2,"
        "seam_vs_old_chunk_l2,plan_vs_executed_l2,jerk_seam_l2,jerk_inside_l2,idle_fraction,"
        "gripper_toggles"
    )
    by = {r["suite"]: r for r in _csv(tmp_path / "leaderboard.csv")}
    spatial = by["libero_spatial"]
    assert [spatial[c] for c in MOTION_COLUMNS] == [
        "2.0",
        "0.15",
        "0.015",
        "",
        "",
        "0.35",
        "0.04",
        "0.05",
        "2.5",
    ]
    assert [by["libero_goal"][c] for c in MOTION_COLUMNS] == ["", "0.6", "", "", "", "", "", "0.25", ""]
    assert all(by["libero_object"][c] == "" for c in MOTION_COLUMNS)
    # the aggregate pools its member suites' episodes: seam_jump_l2 over 0.1, 0.2, 0.6
    assert by["libero"]["seam_jump_l2"] == "0.3" and by["libero"]["gripper_toggles"] == "2.5"


def test_every_published_figure_has_a_source_and_a_headline() -> None:
    figures = load_published()
    readme = (ROOT / "mibot_eval" / "data" / "published" / "README.md").read_text()
    assert figures, "the shipped figures"
    for figure in figures:
        assert figure.source.strip() and figure.url.startswith("https://"), figure
        assert headline(figure.suite, figure.metric) is not None
        assert 0 <= figure.value <= (5 if figure.metric == "avg_len" else 100)
        assert f"{figure.value:g}" in readme, figure  # the README lists each figure with its source
    raw = json.loads((ROOT / "mibot_eval" / "data" / "published" / "published.json").read_text())
    assert all(f.get("source") and f.get("url") for f in raw["figures"])
    assert "mibot_eval.data.published" in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize(
    "entry, problem",
    [
        (
            {"model": "m", "suite": "libero", "metric": "average", "value": 90.0, "url": "https://x"},
            "missing 'source'",
        ),
        (
            {"model": "m", "suite": "libero", "metric": "average", "value": 90.0, "source": " ", "url": "u"},
            "missing 'source'",
        ),
        (
            {
                "model": "m",
                "suite": "libero_10",
                "metric": "success",
                "value": 90.0,
                "source": "s",
                "url": "u",
            },
            "libero_10/success is not a headline",
        ),
        (
            {"model": "m", "suite": "libero", "metric": "average", "value": "90", "source": "s", "url": "u"},
            "'value' must be a number",
        ),
    ],
)
def test_a_figure_without_source_or_headline_is_refused(entry, problem) -> None:
    with pytest.raises(UserError, match=problem):
        parse_figures({"figures": [entry]})


def test_published_figures_never_mix_with_measured_rows(results, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["leaderboard", str(results), "-o", str(out / "lb.csv")]) == 0
    printed = capsys.readouterr().out
    published = _csv(out / "published.csv")
    assert tuple(published[0]) == PUBLISHED_COLUMNS
    assert [r["model"] for r in published] == list(published_frame()["model"])
    models = {r["model"] for r in published}
    measured = (out / "lb.csv").read_text() + (out / "lb_pivot.csv").read_text()
    for figure in load_published():
        assert figure.model not in measured and figure.source not in measured and figure.url not in measured
    assert {r["kind"] for r in _csv(out / "lb.csv")} == {"suite", "aggregate"}
    assert not models & {r["checkpoint"] for r in _csv(out / "lb_pivot.csv")}
    # in the markdown: after the measured tables, in their own section
    section = printed.index("## Reported by others (not measured here)")
    assert printed.index("## Pivot") < section
    assert all(printed.index(m) > section for m in models)
    assert "| π0.5 (openpi pi05_libero, fine-tuned 30k steps) | LIBERO average (%) | 96.85 |" in printed


def test_an_empty_published_table_is_said_so() -> None:
    empty = published_frame([])
    assert list(empty.columns) == list(PUBLISHED_COLUMNS) and empty.empty
    assert "No published figures are shipped." in published_markdown(empty)
    assert 'id="published-none"' in published_table([])
    assert len(HEADLINES) == 6
