"""The sync scheduler executes exactly the first k actions of each chunk, then re-queries."""

from __future__ import annotations

import numpy as np

from mibot_eval.execution import ChunkScheduler, ExecutionConfig

HOLD = np.array([0, 0, 0, 0, 0, 0, -1.0])


def _chunk(tag: int, horizon: int = 10) -> np.ndarray:
    return np.array([[tag * 100 + i] * 7 for i in range(horizon)], dtype=np.float64)


def test_sync_executes_first_k_then_requeries() -> None:
    sched = ChunkScheduler(ExecutionConfig("sync", replan_steps=4), HOLD)
    executed, queries_at = [], []
    tag = 0
    for step in range(10):
        if sched.query_due():
            queries_at.append(step)
            tag += 1
            sched.submit(_chunk(tag), latency_s=0.01)
        action, idle = sched.next_action()
        assert not idle
        executed.append(int(action[0]))
        assert sched.observation_needed() == (step in (3, 7))
    assert queries_at == [0, 4, 8]
    assert executed == [100, 101, 102, 103, 200, 201, 202, 203, 300, 301]
    assert sched.stats.queries == 3 and sched.stats.executed == 10 and sched.stats.idle_steps == 0


def test_sync_chunk_shorter_than_k_and_reset() -> None:
    sched = ChunkScheduler(ExecutionConfig("sync", replan_steps=10), HOLD)
    sched.submit(_chunk(1, horizon=4), latency_s=0.0)
    assert [int(sched.next_action()[0][0]) for _ in range(4)] == [100, 101, 102, 103]
    assert sched.query_due()
    sched.submit(_chunk(2), 0.0)
    sched.reset()
    assert sched.query_due()
    action, idle = sched.next_action()
    assert idle and np.array_equal(action, HOLD) and sched.stats.idle_steps == 1
