"""CALVIN through the real runner with a stand-in env: one record per sequence, resume after an
interrupt and sharding at sequence granularity, chain metrics from the records."""

from __future__ import annotations

import json

import pytest

from mibot_eval.run import planning
from mibot_eval.run.planning import RunRequest
from mibot_eval.run.runner import execute
from mibot_eval.suites.base import make_adapter
from mibot_eval.suites.calvin import DATA_DIR, calvin_summary, load_sequences, release_order
from tests.calvin_standin import ChunkPolicy, EnvFactory, StandInTasks
from tests.fakes import InterruptAt

# Stand-in oracle: these subtasks need this many steps at x = 1; any other subtask never succeeds
# (so a sequence reaching one fails after 360 steps).
THRESHOLDS = {
    "rotate_blue_block_right": 12, "move_slider_right": 8, "lift_red_block_slider": 15,
    "place_in_slider": 9, "turn_off_lightbulb": 11, "turn_off_led": 5, "push_into_drawer": 7,
    "open_drawer": 6, "lift_pink_block_slider": 14,
}


@pytest.fixture()
def standin(monkeypatch):
    """Route the planner's adapter construction to the stand-in env and oracle."""
    factories: list[EnvFactory] = []

    def fake_make_adapter(protocol, **options):
        factory = EnvFactory()
        factories.append(factory)
        return make_adapter(protocol, env_factory=factory, oracle=StandInTasks(THRESHOLDS), **options)

    monkeypatch.setattr(planning, "make_adapter", fake_make_adapter)
    return factories


class InterruptingPolicy(InterruptAt, ChunkPolicy):
    """Raises KeyboardInterrupt (as Ctrl-C would) at the n-th request."""


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]


def _request(tmp_path, checkpoint_dir, sequences, **kw):
    """--tasks counts positions in the release's order: select the sequences at these file indices."""
    order = release_order(1000, 42)
    tasks = [order.index(index) for index in sequences]
    return RunRequest(checkpoint=str(checkpoint_dir), suites=["calvin_abc_d"], tasks=tasks,
                      results_dir=tmp_path / "results", video="none", run_name="calvin-test", **kw)


def test_sequences_record_resume_and_shard(tmp_path, checkpoint_dir, standin) -> None:
    run_dir = tmp_path / "results" / "calvin-test"
    # sequence 0 completes its 5 subtasks in 12+8+15+9+11 = 55 steps = 2+1+2+1+2 = 8 queries;
    # interrupt in the middle of sequence 1
    with pytest.raises(KeyboardInterrupt):
        execute(_request(tmp_path, checkpoint_dir, [0, 1, 2]), policy=InterruptingPolicy(at=10))
    assert [r["key"] for r in _records(run_dir)] == ["calvin_abc_d/0/0"]

    policy = ChunkPolicy()
    execute(_request(tmp_path, checkpoint_dir, [0, 1, 2]), policy=policy)
    records = _records(run_dir)
    assert [r["key"] for r in records] == ["calvin_abc_d/0/0", "calvin_abc_d/1/0", "calvin_abc_d/2/0"]
    assert policy.requests[0].observation.instruction == "Press the button to turn off the led light."

    # a second shard (other sequences, same run) appends; finished sequences never run again
    shard = ChunkPolicy()
    execute(_request(tmp_path, checkpoint_dir, [2, 3]), policy=shard)
    records = _records(run_dir)
    assert [r["task_id"] for r in records] == [0, 1, 2, 3]
    assert [len(f.built) for f in standin] == [2, 2, 1]  # a fresh env for every sequence that ran

    sequences = load_sequences(DATA_DIR / "eval_sequences.json")
    for record in records:
        metrics = record["metrics"]
        assert record["status"] == "ok" and record["task_name"] == f"seq{record['task_id']:04d}"
        assert metrics["sequence"] == record["task_id"]
        assert tuple(metrics["subtasks"]) == sequences[record["task_id"]][1]
        assert record["success"] == (metrics["completed"] == 5)
        assert record["steps"] == sum(metrics["subtask_steps"])
        assert metrics["env_config"] == "stand-in env"
        assert record["robot_type"] == "calvin_abc_orig"
    assert records[0]["metrics"]["completed"] == 5 and records[0]["steps"] == 55
    assert records[0]["metrics"]["queries"] == 8

    summary = calvin_summary(records)
    completed = [r["metrics"]["completed"] for r in records]
    assert summary["sequences"] == 4
    assert summary["avg_len"] == sum(completed) / 4
    assert summary["chain_1"] == 100.0 * sum(c >= 1 for c in completed) / 4

    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["suites"]["calvin_abc_d"]["protocol"]["params"]["subtask_max_steps"] == 360
    assert manifest["expected_episodes"] == {"calvin_abc_d": 2}  # the last invocation's selection
    assert manifest["invocations"] == 3
