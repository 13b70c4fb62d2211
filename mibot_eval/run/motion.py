"""How the robot moved, not only whether it succeeded: per-episode motion metrics from the actions the
scheduler executed (a pure function of its trace; stored in each record as metrics.motion).

Units: env-space actions as executed (LIBERO / SimplerEnv / CALVIN: the suite's 7-d action, motion =
every dimension but the last, the gripper), per control step; a norm is the L2 norm over the motion
dimensions. A *seam* is a step whose action comes from a different chunk than the previous executed
chunk action (a chunk switch, or the first chunk after a policy reset).

  steps                    control steps the episode ran
  time_to_success_steps    steps until success (None when it failed); time_to_success_s = / control Hz
  seams                    number of seams
  seam_vs_old_chunk_l2     mean, over seams where the replaced chunk still had an action for that
                           step, of |first new action - the action the old chunk would have executed
                           there| (None without such a seam: e.g. sync with chunk length = replan)
  seam_jump_l2             mean |a_t - a_{t-1}| at seams (t the seam step; a_{t-1} may be a hold)
  plan_vs_executed_l2      mean, over the steps a chunk's request was in flight (its first d actions,
                           dropped as elapsed), of |the chunk's action for that step - the action
                           executed there|: how far a new plan starts from what the robot did
                           meanwhile (0 when a committed-action prefix pins it; None in sync mode)
  inside_jump_l2           mean |a_t - a_{t-1}| for consecutive actions of the same chunk
  jerk_inside_l2           mean |a_t - 3a_{t-1} + 3a_{t-2} - a_{t-3}| (third difference) with all four
                           actions from one chunk; jerk_seam_l2: the same over windows that are not
  idle_fraction            idle (hold) steps / steps
  gripper_toggles          sign changes of the executed gripper command (zeros skipped)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS = ("steps", "time_to_success_steps", "time_to_success_s", "seams", "seam_vs_old_chunk_l2",
           "seam_jump_l2", "plan_vs_executed_l2", "inside_jump_l2", "jerk_inside_l2", "jerk_seam_l2",
           "idle_fraction", "gripper_toggles")


@dataclass(frozen=True)
class Executed:
    """One executed control step: the action, and which chunk it came from (None: a hold)."""

    step: int
    action: np.ndarray
    chunk: int | None
    index: int | None  # index of the action in its chunk


@dataclass(frozen=True)
class ChunkRecord:
    origin: int  # the control step its request fired at: index i is meant for step origin + i
    actions: np.ndarray


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 6) if values else None


def motion_metrics(trace: Sequence[Executed], chunks: Sequence[ChunkRecord], success_step: int | None,
                   control_hz: float | None) -> dict[str, Any]:
    """The metrics of the module docstring from a scheduler's trace."""
    n = len(trace)
    if not n:
        return {name: None for name in METRICS}
    actions = np.stack([np.asarray(e.action, dtype=np.float64) for e in trace])
    motion = actions[:, :-1]
    ids = [e.chunk for e in trace]
    seam_old, seam_jump, inside = [], [], []
    seams = 0
    previous_chunk = None  # the chunk of the last non-hold step
    for t in range(n):
        e = trace[t]
        if e.chunk is None:
            continue
        if previous_chunk is not None and e.chunk != previous_chunk:
            seams += 1
            if t > 0:
                seam_jump.append(float(np.linalg.norm(motion[t] - motion[t - 1])))
            old = chunks[previous_chunk]
            i_old = e.step - old.origin
            if 0 <= i_old < len(old.actions):
                seam_old.append(float(np.linalg.norm(motion[t] - old.actions[i_old][: motion.shape[1]])))
        elif previous_chunk is not None and t > 0 and ids[t - 1] == e.chunk:
            inside.append(float(np.linalg.norm(motion[t] - motion[t - 1])))
        previous_chunk = e.chunk
    plan_gap = []
    first_step = {}  # chunk -> the first step it executed
    for e in trace:
        if e.chunk is not None:
            first_step.setdefault(e.chunk, e.step)
    for t, e in enumerate(trace):  # steps executed while a later chunk was in flight, in its span
        for c, start in first_step.items():
            chunk = chunks[c]
            i = e.step - chunk.origin
            if e.chunk != c and chunk.origin <= e.step < start and 0 <= i < len(chunk.actions):
                plan_gap.append(float(np.linalg.norm(motion[t] - chunk.actions[i][: motion.shape[1]])))
    jerk_in, jerk_seam = [], []
    for t in range(3, n):
        j = float(np.linalg.norm(motion[t] - 3 * motion[t - 1] + 3 * motion[t - 2] - motion[t - 3]))
        window = ids[t - 3: t + 1]
        (jerk_in if window[0] is not None and len(set(window)) == 1 else jerk_seam).append(j)
    signs = [s for s in np.sign(actions[:, -1]) if s != 0]
    toggles = sum(1 for a, b in zip(signs, signs[1:], strict=False) if a != b)
    steps_to_success = success_step
    return {
        "steps": n,
        "time_to_success_steps": steps_to_success,
        "time_to_success_s": None if steps_to_success is None or not control_hz
        else round(steps_to_success / control_hz, 6),
        "seams": seams,
        "seam_vs_old_chunk_l2": _mean(seam_old),
        "seam_jump_l2": _mean(seam_jump),
        "plan_vs_executed_l2": _mean(plan_gap),
        "inside_jump_l2": _mean(inside),
        "jerk_inside_l2": _mean(jerk_in),
        "jerk_seam_l2": _mean(jerk_seam),
        "idle_fraction": round(sum(1 for e in trace if e.chunk is None) / n, 6),
        "gripper_toggles": toggles,
    }
