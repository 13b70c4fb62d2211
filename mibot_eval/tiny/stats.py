"""Plausible per-robot-type action statistics for the tiny checkpoint (`action_config`).

Robot types and chunk lengths are the released checkpoints' (protocols.md, "The model interface").
Only the first 7 dims are active (xyz delta, rotation delta, gripper); the other 25 have std 0,
so `get_action_mask` masks them. The magnitudes are invented but of the right order for each
dataset's delta actions; the tiny model's numbers mean nothing.
"""

from __future__ import annotations

ACTION_DIM = 32

# robot_type: (T, mean of the 7 active dims, std of the 7 active dims)
ROBOT_TYPES: dict[str, tuple[int, list[float], list[float]]] = {
    "libero_all": (
        10,
        [0.06, 0.09, -0.09, 0.0, 0.005, -0.005, 0.0],
        [0.33, 0.38, 0.45, 0.04, 0.065, 0.08, 1.0],
    ),
    "calvin_abc_orig": (
        10,
        [0.01, -0.02, 0.01, 0.0, 0.0, 0.01, 0.0],
        [0.35, 0.35, 0.3, 0.08, 0.08, 0.3, 1.0],
    ),
    "calvin_abcd_orig": (
        10,
        [0.01, -0.01, 0.01, 0.0, 0.0, 0.01, 0.0],
        [0.34, 0.36, 0.3, 0.08, 0.08, 0.28, 1.0],
    ),
    "fractal_delta": (
        4,
        [0.007, 0.006, -0.011, 0.0, 0.0, 0.0, 0.0],
        [0.07, 0.06, 0.074, 0.13, 0.09, 0.11, 1.0],
    ),
    "bridge_delta": (
        4,
        [0.0002, 0.0001, -0.0001, 0.0, 0.0, 0.0, 0.58],
        [0.009, 0.013, 0.012, 0.028, 0.031, 0.076, 0.49],
    ),
}


def action_config() -> dict[str, dict[str, list[list[float]]]]:
    """`{robot_type: {"mean": T x 32, "std": T x 32}}`; the spread grows slightly along the chunk."""
    out: dict[str, dict[str, list[list[float]]]] = {}
    for name, (horizon, mean, std) in ROBOT_TYPES.items():
        pad = [0.0] * (ACTION_DIM - len(mean))
        out[name] = {
            "mean": [list(mean) + pad for _ in range(horizon)],
            "std": [[round(s * (1.0 + 0.02 * t), 6) for s in std] + pad for t in range(horizon)],
        }
    return out
