"""--shard I/N and `mibot-eval merge`: deterministic split, merge equals the unsharded run, refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mibot_eval.errors import UserError
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from mibot_eval.run.shard import merge_runs
from tests.fakes import ScriptedPolicy
from tests.parallel_fakes import write_suite
from tests.parallel_helpers import libero_request, outcome, records, reference_outcome

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path, checkpoint_dir, suite, **kw) -> Path:
    request = RunRequest(checkpoint=str(checkpoint_dir), suites=[str(suite)],
                         results_dir=tmp_path / "results", video="none", **kw)
    return execute(request, policy=ScriptedPolicy())


def test_shards_merge_into_the_unsharded_run(tmp_path, fakesim, checkpoint_dir) -> None:
    suite = write_suite(tmp_path, tasks=3, episodes=3, max_steps=12, success_at=6)
    full = _run(tmp_path, checkpoint_dir, suite)
    shards = [_run(tmp_path, checkpoint_dir, suite, shard=(i, 3)) for i in range(3)]
    assert [p.name.rsplit("__", 1)[1] for p in shards] == ["shard0of3", "shard1of3", "shard2of3"]
    keys = [sorted(records(p)) for p in shards]
    assert keys == [[f"fake/{t}/{i}" for i in range(3)] for t in range(3)]  # whole tasks
    manifest = json.loads((shards[1] / "manifest.json").read_text())
    assert manifest["shard"]["index"] == 1 and manifest["shard"]["count"] == 3
    assert manifest["expected_episodes"] == {"fake": 3}
    assert len(manifest["shard"]["planned_keys"]) == 9

    summary = merge_runs(shards[::-1], tmp_path / "merged")
    assert summary["missing"] == [] and summary["episodes"] == 9
    merged = records(tmp_path / "merged")
    assert outcome(merged) == outcome(records(full))
    lines = (tmp_path / "merged" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == [f"fake/{t}/{i}" for t in range(3)
                                                           for i in range(3)]  # official order
    merged_manifest = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert merged_manifest["expected_episodes"] == {"fake": 9}
    assert len(merged_manifest["merged_from"]) == 3 and "shard" not in merged_manifest

    # missing shard: reported, not hidden
    partial = merge_runs(shards[:2], tmp_path / "partial")
    assert partial["missing"] == [f"fake/2/{i}" for i in range(3)] and partial["absent_shards"] == [2]

    with pytest.raises(UserError, match="recorded twice"):
        merge_runs([full, shards[0]], tmp_path / "dup")
    with pytest.raises(UserError, match="shard.* given twice|same RUN_DIR"):
        merge_runs([shards[0], shards[0]], tmp_path / "dup2")
    with pytest.raises(UserError, match="already holds episodes"):
        merge_runs(shards, tmp_path / "merged")

    # the CLI: one line per problem, MISSING listed, the folder written, exit 5 (incomplete: a CI job
    # must not take a merge of missing shards for the whole run)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "mibot_eval.cli", "merge", str(shards[0]),
                           "-o", str(tmp_path / "cli"), "--no-report"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert "merged 3 episodes" in proc.stdout and "MISSING 6 planned episode(s)" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "mibot_eval.cli", "merge", str(full), str(shards[0]),
                           "-o", str(tmp_path / "cli2")],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert proc.returncode == 2 and "mibot-eval: error: refusing to merge" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_merge_refuses_different_experiments(tmp_path, fakesim, checkpoint_dir) -> None:
    suite = write_suite(tmp_path, tasks=2, episodes=1, max_steps=12)
    first = _run(tmp_path, checkpoint_dir, suite, shard=(0, 2))
    other = tmp_path / "other-ckpt"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "mibot", "other": 1}')
    second = _run(tmp_path, other, suite, shard=(1, 2))
    with pytest.raises(UserError, match="different checkpoint"):
        merge_runs([first, second], tmp_path / "merged")
    longer = _run(tmp_path, checkpoint_dir, suite, shard=(1, 2), max_steps=20)
    with pytest.raises(UserError, match="another protocol"):
        merge_runs([first, longer], tmp_path / "merged2")


def test_libero_shards_match_the_single_process_run(tmp_path, tiny_checkpoint) -> None:
    pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")
    expected = reference_outcome()
    shards = [execute(libero_request(tmp_path, shard=(i, 2))) for i in range(2)]
    assert [len(records(p)) for p in shards] == [1, 1]
    merge_runs(shards, tmp_path / "merged")
    assert outcome(records(tmp_path / "merged")) == expected
