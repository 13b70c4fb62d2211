"""Latency statistics from episode records, and `mibot-eval latency-sweep` (success vs delay)."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json

import pytest

from mibot_eval.commands.latency_sweep import (
    CSV_NAME,
    PNG_NAME,
    SweepRequest,
    register,
    run_sweep,
    sweep_delays,
)
from mibot_eval.results.measure.latency import latency_summary
from mibot_eval.results.views.latency import latency_markdown

ASYNC = {"mode": "async", "replan_steps": 10, "delay": "fixed", "delay_steps": 6,
         "control_hz": 20.0, "prefix": True}


def _record(metrics: dict, execution: dict | None = None, status: str = "ok") -> dict:
    return {"status": status, "success": False, "suite": "libero_spatial",
            "execution": execution or ASYNC, "metrics": metrics}


def test_summary_of_async_records() -> None:
    # the d = 6 trace of tests/test_execution.py: switches with committed 6, 4, 4 -> 2 idle
    m = {
        "latencies_s": [0.05, 0.01, 0.02, 0.5, 0.03], "request_steps": [0, 4, 10, 16, 22],
        "delay_steps": [0, 6, 6, 6, 6], "committed_steps": [0, 6, 4, 4, 4],
        "prefix_lengths": [0, 6, 6, 6, 6],
        "request_outcomes": ["first", "switch", "switch", "switch", "pending"],
        "idle_steps": 4, "dropped_actions": 18, "executed_actions": 20, "control_hz": 20.0,
    }
    other = {**m, "idle_steps": 0, "dropped_actions": 12}
    errored = _record({"latencies_s": [9.0]}, status="error")
    s = latency_summary([_record(m), _record(other), errored])
    assert s["execution"] == ASYNC and s["episodes"] == 2 and s["requests"] == 10
    assert s["latency_ms"]["p50"] == 30.0 and s["latency_ms"]["max"] == 500.0
    assert s["chunk_switches"] == 6 and s["idle_switches"] == 4
    assert s["idle_switch_fraction"] == pytest.approx(4 / 6, abs=1e-4)
    # late at this machine's latency: 0.5 s > 4 steps / 20 Hz = 0.2 s, the others are not
    assert s["late_switches"] == 2 and s["late_switch_fraction"] == pytest.approx(2 / 6, abs=1e-4)
    assert s["idle_steps_per_episode"]["mean"] == 2.0 and s["idle_steps_per_episode"]["max"] == 4.0
    assert s["idle_steps_total"] == 4 and s["dropped_actions_per_episode"]["mean"] == 15.0
    assert s["switch_delay_steps"]["mean"] == 6.0 and s["prefix_requests"] == 8
    text = latency_markdown(s)
    assert "fixed delay 6 steps (= 300 ms at 20 Hz)" in text and "prefix: true" in text
    assert "| inference latency p50 / p95 / p99 | 30 ms /" in text
    assert "4 (66.7%)" in text


def test_summary_of_sync_and_legacy_records() -> None:
    sync = {"mode": "sync", "replan_steps": 10}
    legacy = {"latencies_s": [0.2, 0.1, 0.1], "queries": 3, "executed_actions": 25, "idle_steps": 0}
    s = latency_summary([_record(legacy, sync)])
    assert s["chunk_switches"] == 2 and s["idle_switches"] == 0
    assert s["late_switch_fraction"] == 1.0  # sync: the robot waits during every inference
    text = latency_markdown(s)
    assert "sync (replan every 10 steps" in text
    empty = latency_summary([])
    assert empty["latency_ms"] is None and empty["idle_switch_fraction"] is None
    assert "| chunk switches | 0 |" in latency_markdown(empty)


def test_sweep_delays() -> None:
    assert sweep_delays(None, None, default_max=4) == [0, 1, 2, 3, 4]
    assert sweep_delays(2, None, default_max=10) == [0, 1, 2]
    assert sweep_delays(None, [8, 0, 2, 2], default_max=10) == [0, 2, 8]


def test_command_line_options() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "latency-sweep", "--checkpoint", "tiny", "--suites", "libero_spatial", "--tasks", "0",
        "--episodes", "1", "--max-steps", "40", "--max-delay", "4", "--no-prefix",
    ])
    assert (args.checkpoint, args.suites, args.tasks, args.episodes) == ("tiny", ["libero_spatial"],
                                                                        [0], 1)
    assert args.max_steps == 40 and args.max_delay == 4 and args.no_prefix and args.delays is None
    assert parser.parse_args(["latency-sweep", "-c", "x", "--delays", "0,3,6"]).delays == [0, 3, 6]


def test_sweep_runs_one_resumable_run_per_delay(tmp_path) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    from tests.fakes import ScriptedPolicy

    checkpoint = tmp_path / "my-ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text('{"model_type": "mibot"}')
    request = SweepRequest(checkpoint=str(checkpoint), suites=["libero_spatial"], tasks=[0],
                           episodes_per_task=1, max_steps=12, delays=[0, 6],
                           results_dir=tmp_path / "results")
    policy = ScriptedPolicy()
    folders = run_sweep(request, policy=policy)
    folder = folders["libero_spatial"]
    label = f"my-ckpt-{hashlib.sha256(f'local:{checkpoint.resolve()}'.encode()).hexdigest()[:8]}"
    assert folder == tmp_path / "results" / f"latency-sweep__{label}__libero_spatial"
    with (folder / CSV_NAME).open() as stream:
        rows = list(csv.DictReader(stream))
    assert [r["delay_steps"] for r in rows] == ["0", "6"]
    assert [r["delay_ms"] for r in rows] == ["0.0", "300.0"]
    assert [r["run"] for r in rows] == [f"{label}__libero__async__max12__delay_steps0",
                                        f"{label}__libero__async__max12__delay_steps6"]
    assert all(r["episodes"] == "1" and r["prefix"] == "unsupported" for r in rows)
    assert rows[0]["idle_steps_per_episode"] == "0.0"
    # d = 6, k = T = 10, 12 steps: requests at 0 and 4; the chunk arrives at 10 from index 6, its
    # window [6, 10) is not longer than d, so the next request fires at once
    assert rows[1]["idle_steps_per_episode"] == "0.0" and rows[1]["dropped_actions_per_episode"] == "6.0"
    assert (folder / PNG_NAME).read_bytes()[:4] == b"\x89PNG"
    record = json.loads((tmp_path / "results" / rows[1]["run"] / "episodes.jsonl").read_text())
    assert record["metrics"]["request_steps"] == [0, 4, 10] and record["execution"]["delay_steps"] == 6
    requests = len(policy.requests)
    assert requests == 2 + 3  # d = 0 (as sync): steps 0 and 10
    run_sweep(request, policy=policy)  # everything is finished: nothing runs again
    assert len(policy.requests) == requests


def test_a_sweep_row_fills_every_csv_column_and_bootstraps_motion_bands(tmp_path) -> None:
    from mibot_eval.commands.latency_sweep import CSV_FIELDS, sweep_row

    records = []
    for i, (jump, tts) in enumerate([(0.1, 1.0), (0.3, None), (0.2, 2.0)]):
        records.append({"key": f"s/0/{i}", "suite": "s", "status": "ok", "success": tts is not None,
                        "metrics": {"motion": {"seam_jump_l2": jump, "time_to_success_s": tts,
                                               "seam_vs_old_chunk_l2": None}}})
    records.append({"key": "s/0/3", "suite": "s", "status": "error", "success": False, "metrics": {}})
    row = sweep_row("s", 2, 10.0, tmp_path / "run", records)
    assert set(row) == set(CSV_FIELDS)
    assert row["episodes"] == 4 and row["successes"] == 2 and row["errors"] == 1  # an error: a failure
    assert row["seam_jump_l2"] == pytest.approx(0.2)
    assert 0.1 <= row["seam_jump_l2_ci95_low"] <= 0.2 <= row["seam_jump_l2_ci95_high"] <= 0.3
    assert row["time_to_success_s"] == pytest.approx(1.5) and row["seam_vs_old_chunk_l2"] is None
