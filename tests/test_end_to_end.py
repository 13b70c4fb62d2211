"""The offline smoke run through the real loading path and the real LIBERO simulator.

`mibot-eval run --checkpoint tiny-release-like ...` loads the tiny checkpoint as limited as the
released ones (one int seed per forward, no prefix input) with AutoModel/AutoProcessor
(trust_remote_code), runs real LIBERO episodes, writes records, videos, the report and the
leaderboard; a SIGKILL mid-run loses nothing and the rerun resumes without duplicates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
pytest.importorskip("transformers", reason="the model stack is installed by `make setup`")

ROOT = Path(__file__).resolve().parents[1]


def _cmd(results: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "mibot_eval.cli", "run", "--checkpoint", "tiny-release-like",
        "--suites", "libero_spatial", "--tasks", "0", "--results", str(results), *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl"}


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "episodes.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_smoke_run_writes_real_results(tmp_path, tiny_release_like_checkpoint) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        _cmd(results, "--episodes", "2", "--max-steps", "25", "--video", "all"),
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = results / "tiny-release-like__libero__sync__max25"
    records = _records(run_dir)
    assert [r["key"] for r in records] == ["libero_spatial/0/0", "libero_spatial/0/1"]
    for record in records:
        assert record["status"] == "ok", record["error"]
        assert record["checkpoint"] == "tiny-release-like" and record["robot_type"] == "libero_all"
        assert record["steps"] == 25 or record["success"]
        assert record["metrics"]["queries"] == 3  # steps 0, 10, 20
        video = run_dir / record["metrics"]["video"]
        assert video.suffix == ".mp4" and video.stat().st_size > 0
        import imageio.v2 as imageio

        with imageio.get_reader(video) as reader:
            frames = [frame for frame in reader]
        assert len(frames) == record["steps"] + 1 and frames[0].shape == (256, 256, 3)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["checkpoint"]["source"].startswith("tiny:")
    assert manifest["policy"]["kind"] == "hf" and manifest["policy"]["dtype"] == "float32"
    assert manifest["policy"]["attn_implementation"] == "sdpa"
    assert "libero_spatial" in proc.stdout and "|" in proc.stdout  # the markdown report
    assert (run_dir / "report.csv").exists()
    assert (results / "leaderboard.csv").exists()


def test_sigkill_mid_run_then_resume(tmp_path, tiny_release_like_checkpoint) -> None:
    results = tmp_path / "results"
    command = _cmd(results, "--episodes", "3", "--max-steps", "10", "--video", "none",
                   "--no-report")
    run_dir = results / "tiny-release-like__libero__sync__max10"
    proc = subprocess.Popen(command, env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and len(_records(run_dir)) < 1 and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = len(_records(run_dir))
    assert 1 <= killed_with < 3, "the kill should land mid-run"
    rerun = subprocess.run(command, env=_env(), cwd=ROOT, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    keys = [r["key"] for r in _records(run_dir)]
    assert sorted(keys) == [f"libero_spatial/0/{i}" for i in range(3)]
    assert len(keys) == len(set(keys))
