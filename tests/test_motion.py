"""Motion metrics with known answers on hand-built action sequences, and the hold that holds."""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.run.motion import ChunkRecord, Executed, motion_metrics
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig

SYNC = ExecutionConfig("sync", replan_steps=4, control_hz=10.0)
HOLD = np.array([0, 0, 0, 0, 0, 0, -1.0])


def _chunk(rows: list[list[float]], gripper: float = 1.0) -> np.ndarray:
    """(T, 7): motion in the first dim, zeros elsewhere, the gripper last."""
    out = np.zeros((len(rows), 7))
    out[:, 0] = [r[0] for r in rows]
    out[:, 6] = gripper
    return out


def _run(chunks: list[np.ndarray], config: ExecutionConfig = SYNC, steps: int = 8,
         hold_gripper: str = "last") -> ChunkScheduler:
    sched = ChunkScheduler(config, HOLD, hold_gripper)
    source = iter(chunks)
    for _ in range(steps):
        while sched.query_due():
            sched.submit(next(source), 0.0)
        sched.next_action()
    return sched


def test_a_constant_chunk_has_no_jump_no_jerk_and_no_seam_discontinuity() -> None:
    same = _chunk([[0.5]] * 4)
    metrics = _run([same, same]).motion_metrics(success_step=None)
    assert metrics["steps"] == 8 and metrics["seams"] == 1
    assert metrics["seam_jump_l2"] == 0.0 and metrics["inside_jump_l2"] == 0.0
    assert metrics["jerk_inside_l2"] == 0.0 and metrics["jerk_seam_l2"] == 0.0
    assert metrics["seam_vs_old_chunk_l2"] is None  # sync, T = k: the old chunk has no action there
    assert metrics["idle_fraction"] == 0.0 and metrics["gripper_toggles"] == 0
    assert metrics["time_to_success_steps"] is None and metrics["time_to_success_s"] is None


def test_a_step_at_the_seam() -> None:
    low, high = _chunk([[0.0]] * 4), _chunk([[1.0]] * 4, gripper=-1.0)
    metrics = _run([low, high]).motion_metrics(success_step=6)
    assert metrics["seam_jump_l2"] == 1.0 and metrics["inside_jump_l2"] == 0.0
    # third differences spanning the seam at step 4 (windows 1-4, 2-5, 3-6): |1|, |-3 + 1|, |3 - 3 + 1|
    assert metrics["jerk_seam_l2"] == pytest.approx((1 + 2 + 1) / 3)
    assert metrics["jerk_inside_l2"] == 0.0  # windows 0-3 and 4-7 lie inside one chunk
    assert metrics["gripper_toggles"] == 1
    assert metrics["time_to_success_steps"] == 6 and metrics["time_to_success_s"] == 0.6


def test_a_ramp_jumps_evenly_and_has_no_jerk_inside() -> None:
    ramp = _chunk([[0.1 * i] for i in range(8)])
    metrics = _run([ramp], ExecutionConfig("sync", replan_steps=8), steps=8).motion_metrics(None)
    assert metrics["seams"] == 0 and metrics["seam_jump_l2"] is None
    assert metrics["inside_jump_l2"] == pytest.approx(0.1)
    assert metrics["jerk_inside_l2"] == pytest.approx(0.0, abs=1e-12)


def test_the_old_chunk_prediction_at_a_seam_in_async_mode() -> None:
    """d = 2, T = 6, k = 4: the new chunk takes over at step 4 where the old chunk (index 4) still had
    an action; the discontinuity is |new[2] - old[4]| (the new chunk's first 2 actions elapsed)."""
    config = ExecutionConfig("async", replan_steps=4, delay="fixed", delay_steps=2, control_hz=10.0)
    old = _chunk([[0.0], [0.1], [0.2], [0.3], [0.4], [0.5]])
    new = _chunk([[9.0], [9.0], [0.7], [0.8], [0.9], [1.0]])
    sched = _run([old, new, new], config, steps=6)
    metrics = sched.motion_metrics(None)
    assert metrics["seam_vs_old_chunk_l2"] == pytest.approx(0.3)  # |0.7 - 0.4|
    assert metrics["seam_jump_l2"] == pytest.approx(0.4)  # |0.7 - 0.3|


def test_idle_steps_hold_still_and_keep_the_last_gripper_command() -> None:
    """The hold that holds: zero motion and the last executed gripper command (a grasp stays closed),
    also inside a prefix beyond the committed window; the old hold opened LIBERO's gripper (-1)."""
    config = ExecutionConfig("async", replan_steps=4, delay="fixed", delay_steps=6, control_hz=10.0,
                             prefix_supported=True)
    closed = _chunk([[0.2]] * 4, gripper=1.0)
    sched = ChunkScheduler(config, HOLD, "last")
    assert sched.query_due()
    sched.submit(closed, 0.0)
    actions = [sched.next_action() for _ in range(4)]
    assert not any(idle for _, idle in actions)
    prefix = sched.prefix()
    assert prefix is not None and prefix.shape == (4, 7) and (prefix[:, 6] == 1.0).all()
    sched.submit(closed, 0.0)
    held = [sched.next_action() for _ in range(6)]
    assert all(idle for _, idle in held)
    assert all(a[6] == 1.0 and not a[:6].any() for a, _ in held)
    metrics = sched.motion_metrics(None)
    assert metrics["idle_fraction"] == pytest.approx(0.6)
    old_style = ChunkScheduler(config, HOLD, "hold_action")
    old_style.submit(closed, 0.0)
    for _ in range(4):
        old_style.next_action()
    old_style.submit(closed, 0.0)
    assert old_style.next_action()[0][6] == -1.0  # the hold action's own gripper: opens


def test_metrics_of_an_empty_trace_are_none() -> None:
    assert motion_metrics([], [], None, 10.0)["seams"] is None
    trace = [Executed(0, np.zeros(7), None, None)]
    assert motion_metrics(trace, [ChunkRecord(0, np.zeros((1, 7)))], None, None)["idle_fraction"] == 1.0


def test_the_plan_gap_is_zero_when_a_prefix_pins_the_new_chunk() -> None:
    """d = 2: the new chunk's first two actions are for steps the robot already executed; with a
    prefix they equal the executed ones (gap 0), without one they are whatever the model planned."""
    config = ExecutionConfig("async", replan_steps=4, delay="fixed", delay_steps=2, control_hz=10.0)
    old = _chunk([[0.0], [0.1], [0.2], [0.3]])
    pinned = _chunk([[0.2], [0.3], [0.7], [0.8]])  # indices 0, 1 = the steps 2, 3 executed from `old`
    free = _chunk([[0.9], [0.9], [0.7], [0.8]])
    assert _run([old, pinned, pinned], config, steps=6).motion_metrics(None)["plan_vs_executed_l2"] == 0.0
    gap = _run([old, free, free], config, steps=6).motion_metrics(None)["plan_vs_executed_l2"]
    assert gap == pytest.approx((0.7 + 0.6) / 2)  # |0.9 - 0.2|, |0.9 - 0.3|
    assert _run([old, old], SYNC, steps=8).motion_metrics(None)["plan_vs_executed_l2"] is None
