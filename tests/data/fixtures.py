"""Build run folders (manifest.json + episodes.jsonl) with known answers, in the store's format."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mibot_eval.config import load_suite

RUNS = Path(__file__).resolve().parent / "runs"
SYNC = {"mode": "sync", "replan_steps": 10}


def official(suite: str, **overrides: Any) -> dict[str, Any]:
    """Manifest entry of a suite from its YAML (optionally with protocol overrides)."""
    protocol = load_suite(suite).with_overrides(**overrides)
    return {"hash": protocol.protocol_hash(), "protocol": protocol.as_dict()}


def synthetic(suite: str, benchmark: str, num_tasks: int, episodes_per_task: int,
              max_steps: int = 100) -> dict[str, Any]:
    """Manifest entry of a suite that has no YAML here (CALVIN, SimplerEnv)."""
    protocol = {"name": suite, "benchmark": benchmark, "num_tasks": num_tasks,
                "episodes_per_task": episodes_per_task, "max_steps": max_steps, "seed": 0,
                "replan_steps": 4, "execution": "sync"}
    digest = hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]
    return {"hash": digest, "protocol": protocol}


def task_records(
    suite: str, task_id: int, successes: int, n: int, *, task_name: str | None = None,
    errors: int = 0, repeats: int = 1, first_trial: int = 0, benchmark: str = "libero",
) -> list[dict[str, Any]]:
    """n ok independent trials (the first `successes` succeed), each recorded `repeats` times
    (copies carry metrics.repeat_of), then `errors` errored episodes."""
    out = []
    for i in range(n):
        original = f"{suite}/{task_id}/{(first_trial + i) * repeats}"
        for j in range(repeats):
            trial = (first_trial + i) * repeats + j
            out.append(_record(suite, task_id, trial, i < successes, task_name, benchmark,
                               {"repeat_of": original} if j else {}))
    for e in range(errors):
        trial = (first_trial + n) * repeats + e
        rec = _record(suite, task_id, trial, False, task_name, benchmark, {})
        rec.update(status="error", error="RuntimeError: simulator crashed\nTraceback line")
        out.append(rec)
    return out


def chain_records(suite: str, completed: Sequence[int]) -> list[dict[str, Any]]:
    """CALVIN-style records: one per sequence with metrics.completed and metrics.subtasks."""
    names = ["open_drawer", "push_red_block_left", "turn_on_led", "stack_block", "close_drawer"]
    out = []
    for i, count in enumerate(completed):
        rec = _record(suite, i, 0, count == 5, f"sequence_{i}", "calvin",
                      {"completed": int(count), "subtasks": names})
        out.append(rec)
    return out


def _record(suite: str, task_id: int, trial: int, success: bool, task_name: str | None,
            benchmark: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": 1, "key": f"{suite}/{task_id}/{trial}", "suite": suite, "task_id": task_id,
        "task_name": task_name or f"task_{task_id}", "instruction": "do it", "trial": trial,
        "seed": 7, "success": bool(success), "steps": 50, "status": "ok", "error": None,
        "benchmark": benchmark,
        "timings": {"reset_s": 0.5, "infer_s": 1.0, "sim_s": 0.25, "render_s": 0.25, "total_s": 2.0},
        "metrics": dict(metrics), "finished_at": "2025-01-01T00:00:00+00:00",
    }


def write_run(
    results: Path, run: str, checkpoint: str, suites: dict[str, dict[str, Any]],
    records: Sequence[dict[str, Any]], *, execution: dict[str, Any] | None = None,
    selection: dict[str, Any] | None = None, expected: dict[str, int] | None = None,
    checkpoint_id: str = "c0ffee", finished_at: str | None = None,
) -> Path:
    """Write results/run/{manifest.json,episodes.jsonl} like the runner does."""
    execution = dict(execution or SYNC)
    run_dir = Path(results) / run
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "run": run, "checkpoint": {"name": checkpoint, "source": "test", "revision": None,
                                   "hash": checkpoint_id},
        "benchmark": "+".join(sorted({str(v["protocol"]["benchmark"]) for v in suites.values()})),
        "execution": execution, "suites": suites,
        "selection": selection or {"tasks": None, "episodes_per_task": None},
        "expected_episodes": expected or {s: v["protocol"]["num_tasks"] * v["protocol"]["episodes_per_task"]
                                          for s, v in suites.items()},
        "packages": {"mibot-eval": "0.1.0"}, "git_commit": "abc123",
        "created_at": "2025-01-01T00:00:00+00:00", "invocations": 1,
    }
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with (run_dir / "episodes.jsonl").open("w") as stream:
        for rec in records:
            suite = rec["suite"]
            full = {**rec, "run": run, "checkpoint": checkpoint, "checkpoint_id": checkpoint_id,
                    "protocol_hash": suites[suite]["hash"], "execution": execution}
            if finished_at:
                full["finished_at"] = finished_at
            stream.write(json.dumps(full, sort_keys=True) + "\n")
    return run_dir


def libero_run(results: Path, run: str, counts: dict[str, Sequence[int]], *, episodes: int = 50,
               checkpoint: str = "Xiaomi-Robotics-0-LIBERO", **protocol_overrides: Any) -> Path:
    """A LIBERO run with the official protocols: counts[suite][task] successes of `episodes`."""
    suites = {s: official(s, **protocol_overrides) for s in counts}
    records = [r for s, per_task in counts.items() for t, k in enumerate(per_task)
               for r in task_records(s, t, k, episodes)]
    selection = {"tasks": None, "episodes_per_task": None if episodes == 50 else episodes}
    expected = {s: len(per_task) * episodes for s, per_task in counts.items()}
    return write_run(results, run, checkpoint, suites, records, selection=selection, expected=expected,
                     finished_at="2025-02-01T00:00:00+00:00")


def copy_recorded(name: str, results: Path) -> Path:
    """Copy a recorded run from tests/data/runs into results/, restamped with today's official
    protocol of its suites (so it stays comparable when a suite YAML changes)."""
    run_dir = Path(results) / name
    shutil.copytree(RUNS / name, run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["suites"] = {s: official(s) for s in manifest["suites"]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    lines = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    for rec in lines:
        rec["protocol_hash"] = manifest["suites"][rec["suite"]]["hash"]
    (run_dir / "episodes.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))
    return run_dir
