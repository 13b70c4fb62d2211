"""SimplerEnv conversions, as pure functions: model chunk -> env action, env observation -> model input.

Source of every rule: the Xiaomi-Robotics-0 release's SimplerEnv client
(`eval_simplerenv/main.py`, commit 3c297b2), which uses transforms3d for the rotations and PIL /
torchvision for the image. The math here is written out with numpy so the harness does not depend
on transforms3d; the real-simulator check (docs/verification.md) compared it with transforms3d.

Actions (the decoded chunk's first 7 dims: delta xyz, roll, pitch, yaw, gripper):
  * xyz passes through;
  * roll/pitch/yaw are static-axis x-y-z Euler angles (transforms3d axes "sxyz"), turned into an
    axis-angle vector axis * angle (transforms3d `euler2axangle`, angle = 2 acos(w) in [0, 2 pi]);
  * gripper: Google Robot (trained on [0, 1], 1 = open) -> clip(-(2a - 1), -1, 1) (relative command,
    +1 closes); WidowX -> +1 (open) if a > 0.5 else -1.
State (8 dims before the policy pads it to 32), from ManiSkill2_real2sim's `obs["agent"]["eef_pos"]`
= [x, y, z, qw, qx, qy, qz, gripper opening in [0, 1]] (end effector in the robot base frame):
  * fractal: [x, y, z, qx, qy, qz, qw, 1 - opening] with the quaternion normalised and w >= 0
    (the release's quat2mat -> mat2quat round trip);
  * bridge: [x, y, z, roll, pitch, yaw, 0, opening], the Euler angles ("sxyz") of
    R(q) @ D.T with D = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]] (the top-down default orientation).
Bit for bit: where transforms3d is importable (SimplerEnv depends on it, so wherever SimplerEnv runs)
states and actions are computed with it exactly as the release's client does, on the simulator's own
dtypes (float32 eef pose and gripper arithmetic); the state's bits feed the per-request seed. Without
it the numpy versions here are used (float64 throughout: equal up to float32 rounding, about 1e-7,
so the seeds differ; `conversion_backend()` says which, the manifest records it).
Image: PIL resize to the model size (PIL's default filter for RGB, bicubic), centre crop of
`int(h * ratio) x int(w * ratio)` at offset ((h - ch) // 2, (w - cw) // 2), PIL bilinear resize back
(torchvision `F.resize` on a PIL image, its default interpolation).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

GRIPPER_RULES = ("google_relative", "widowx_binary")
STATE_RULES = ("fractal_eef", "bridge_eef")
STATE_DIM = 8
_EPS4 = np.finfo(float).eps * 4.0
BRIDGE_DEFAULT_ROT = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])


# -- rotations ------------------------------------------------------------------------------------
def euler_sxyz_to_quat(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of R = Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr = math.cos(roll / 2.0), math.sin(roll / 2.0)
    cp, sp = math.cos(pitch / 2.0), math.sin(pitch / 2.0)
    cy, sy = math.cos(yaw / 2.0), math.sin(yaw / 2.0)
    return np.array(
        [
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ]
    )


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Axis-angle vector of a (w, x, y, z) quaternion; angle = 2 acos(w) after normalising."""
    q = np.asarray(quat, dtype=np.float64)
    norm = float(np.sqrt(q @ q))
    if not np.isfinite(norm) or norm < 1e-300:
        return np.zeros(3)
    w, x, y, z = q / norm
    vec_norm = math.sqrt(x * x + y * y + z * z)
    if vec_norm < 1e-15:  # identity rotation
        return np.zeros(3)
    angle = 2.0 * math.acos(min(max(w, -1.0), 1.0))
    return np.array([x, y, z]) / vec_norm * angle


def euler_to_axis_angle(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """The release's `euler2axangle(roll, pitch, yaw)` ("sxyz"), as one axis * angle vector."""
    return quat_to_axis_angle(euler_sxyz_to_quat(float(roll), float(pitch), float(yaw)))


def quat_to_matrix(quat_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrix of a (w, x, y, z) quaternion (normalised first; zero -> identity)."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    n = w * w + x * x + y * y + z * z
    if n < 1e-300:
        return np.eye(3)
    s = 2.0 / n
    return np.array(
        [
            [1.0 - s * (y * y + z * z), s * (x * y - w * z), s * (x * z + w * y)],
            [s * (x * y + w * z), 1.0 - s * (x * x + z * z), s * (y * z - w * x)],
            [s * (x * z - w * y), s * (y * z + w * x), 1.0 - s * (x * x + y * y)],
        ]
    )


def matrix_to_euler_sxyz(mat: np.ndarray) -> np.ndarray:
    """(roll, pitch, yaw) with mat = Rz(yaw) @ Ry(pitch) @ Rx(roll); yaw = 0 at gimbal lock."""
    m = np.asarray(mat, dtype=np.float64)
    cos_pitch = math.sqrt(m[0, 0] * m[0, 0] + m[1, 0] * m[1, 0])
    if cos_pitch > _EPS4:
        roll = math.atan2(m[2, 1], m[2, 2])
        pitch = math.atan2(-m[2, 0], cos_pitch)
        yaw = math.atan2(m[1, 0], m[0, 0])
    else:
        roll = math.atan2(-m[1, 2], m[1, 1])
        pitch = math.atan2(-m[2, 0], cos_pitch)
        yaw = 0.0
    return np.array([roll, pitch, yaw])


def canonical_quat_xyzw(quat_wxyz: np.ndarray) -> np.ndarray:
    """A (w, x, y, z) quaternion normalised, sign chosen so that w >= 0, returned as (x, y, z, w)."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    q = q / np.sqrt(q @ q)
    if q[0] < 0:
        q = -q
    return np.array([q[1], q[2], q[3], q[0]])


# -- actions --------------------------------------------------------------------------------------
def google_gripper(value: float) -> float:
    """Google Robot: model gripper in [0, 1] (1 = open) -> relative command, +1 closes; computed in
    the chunk's dtype (float32), as the release's client does."""
    v = np.asarray(value)[()]
    return float(np.clip(-(v * 2 - 1), -1, 1))


def widowx_gripper(value: float) -> float:
    """WidowX: model gripper > 0.5 -> +1 (open), else -1 (close)."""
    return 1.0 if float(value) > 0.5 else -1.0


GRIPPERS = {"google_relative": google_gripper, "widowx_binary": widowx_gripper}


def model_to_env_action(action: np.ndarray, gripper_rule: str) -> np.ndarray:
    """One 7-dim model action (xyz, roll, pitch, yaw, gripper) -> SimplerEnv (xyz, axis-angle, gripper)."""
    a = np.asarray(action)
    if a.shape != (7,):
        raise ValueError(f"expected a 7-dim action, got shape {a.shape}")
    out = np.empty(7)
    out[:3] = a[:3]
    t3d = _transforms3d()
    if t3d is None:
        out[3:6] = euler_to_axis_angle(a[3], a[4], a[5])
    else:
        axis, angle = t3d.euler.euler2axangle(a[3], a[4], a[5])
        out[3:6] = axis * angle
    out[6] = GRIPPERS[gripper_rule](a[6])
    return out


def chunk_to_env_actions(chunk: np.ndarray, gripper_rule: str) -> np.ndarray:
    """(T, >=7) decoded model chunk -> (T, 7) SimplerEnv actions."""
    chunk = np.asarray(chunk)
    if chunk.ndim != 2 or chunk.shape[1] < 7:
        raise ValueError(f"expected a (T, >=7) action chunk, got {chunk.shape}")
    return np.stack([model_to_env_action(row[:7], gripper_rule) for row in chunk])


# -- state ----------------------------------------------------------------------------------------
def _transforms3d() -> Any:
    try:
        import transforms3d.euler
        import transforms3d.quaternions
    except ImportError:
        return None
    return transforms3d


def conversion_backend() -> str:
    """'transforms3d' (bit-identical to the release's client) or 'numpy' (float32-rounding close)."""
    return "transforms3d" if _transforms3d() is not None else "numpy"


def fractal_state(eef_pos: np.ndarray) -> np.ndarray:
    """Google Robot state: position, quaternion (x, y, z, w) via the quat -> matrix -> quat round
    trip, gripper closedness 1 - opening (in the simulator's dtype), as float64."""
    p = np.asarray(eef_pos)
    t3d = _transforms3d()
    if t3d is None:
        quat = canonical_quat_xyzw(np.asarray(p[3:7], dtype=np.float64))
    else:
        quat = t3d.quaternions.mat2quat(t3d.quaternions.quat2mat(p[3:7]))[[1, 2, 3, 0]]
    return np.concatenate([p[:3], quat, [1 - p[7]]]).astype(np.float64)


def bridge_state(eef_pos: np.ndarray) -> np.ndarray:
    """WidowX state: position, roll/pitch/yaw of the top-down-relative rotation, 0, gripper opening."""
    p = np.asarray(eef_pos)
    t3d = _transforms3d()
    if t3d is None:
        rotation = quat_to_matrix(np.asarray(p[3:7], dtype=np.float64))
        rpy = matrix_to_euler_sxyz(rotation @ BRIDGE_DEFAULT_ROT.T)
    else:
        rpy = t3d.euler.mat2euler(t3d.quaternions.quat2mat(p[3:7]) @ BRIDGE_DEFAULT_ROT.T)
    return np.concatenate([p[:3], rpy, [0.0, p[7]]]).astype(np.float64)


STATES = {"fractal_eef": fractal_state, "bridge_eef": bridge_state}


# -- image ----------------------------------------------------------------------------------------
def crop_box(height: int, width: int, ratio: float) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) of the release's centre crop."""
    ch, cw = int(height * ratio), int(width * ratio)
    return (height - ch) // 2, (width - cw) // 2, ch, cw


def preprocess_image(rgb: np.ndarray, width: int, height: int, crop_ratio: float) -> np.ndarray:
    """Camera RGB -> the model's view: bicubic resize, centre crop, bilinear resize back."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    top, left, ch, cw = crop_box(height, width, crop_ratio)
    image = image.crop((left, top, left + cw, top + ch))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)
