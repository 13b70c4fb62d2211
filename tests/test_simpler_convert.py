"""SimplerEnv conversions: known input -> known output.

Expected rotation values were computed with transforms3d 0.4.2 (the library the release's client
uses: euler2axangle, quat2mat, mat2quat, mat2euler), see docs/verification.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from mibot_eval.suites.simpler_convert import (
    bridge_state,
    chunk_to_env_actions,
    crop_box,
    euler_sxyz_to_quat,
    euler_to_axis_angle,
    fractal_state,
    google_gripper,
    matrix_to_euler_sxyz,
    preprocess_image,
    quat_to_matrix,
    widowx_gripper,
)


@pytest.mark.parametrize(
    ("rpy", "expected"),
    [
        ((0.0, 0.0, 0.0), [0.0, 0.0, 0.0]),
        ((math.pi / 2, 0.0, 0.0), [math.pi / 2, 0.0, 0.0]),
        ((0.0, 0.0, -0.4), [0.0, 0.0, -0.4]),
        ((0.1, 0.2, 0.3), [0.06892461388206558, 0.2132259269578862, 0.2887489392286753]),
        ((-0.05, 0.02, 0.5), [-0.0539523125244163, 0.0070780575072419, 0.5003781558969775]),
        # w < 0: the release's euler2axangle returns the angle in (pi, 2 pi], not the short way
        ((3.0, -1.2, 2.5), [1.4678533680747718, 3.792629182880325, 1.1496284418808542]),
    ],
)
def test_euler_to_axis_angle(rpy, expected) -> None:
    assert np.allclose(euler_to_axis_angle(*rpy), expected, atol=1e-12, rtol=0)


def test_grippers() -> None:
    # Google Robot: trained on [0, 1] with 1 = open; SimplerEnv relative command, +1 closes
    assert [google_gripper(a) for a in (0.0, 0.25, 0.5, 1.0, 1.3, -0.2)] == [1.0, 0.5, 0.0, -1.0, -1.0, 1.0]
    # WidowX: > 0.5 opens (+1), otherwise closes (-1)
    assert [widowx_gripper(a) for a in (0.0, 0.5, 0.5001, 0.9, 1.2)] == [-1.0, -1.0, 1.0, 1.0, 1.0]


def test_chunk_to_env_actions() -> None:
    chunk = np.zeros((4, 32), dtype=np.float32)
    chunk[:, :3] = [[0.01, -0.02, 0.03]] * 4
    chunk[1, 3:6] = [0.1, 0.2, 0.3]
    chunk[:, 6] = [0.0, 1.0, 0.7, 0.2]
    chunk[:, 7:] = 99.0  # dims past the first 7 are not the env's
    google = chunk_to_env_actions(chunk, "google_relative")
    assert google.shape == (4, 7) and google.dtype == np.float64
    assert np.allclose(google[:, :3], [[0.01, -0.02, 0.03]] * 4)
    assert np.allclose(google[0, 3:6], 0.0)
    assert np.allclose(google[1, 3:6], [0.06892461388206558, 0.2132259269578862, 0.2887489392286753])
    assert np.allclose(google[:, 6], [1.0, -1.0, -0.4, 0.6])
    widowx = chunk_to_env_actions(chunk, "widowx_binary")
    assert np.allclose(widowx[:, 6], [-1.0, 1.0, 1.0, -1.0])
    with pytest.raises(ValueError):
        chunk_to_env_actions(np.zeros((4, 6)), "widowx_binary")


def test_fractal_state() -> None:
    q = [0.9818561728660808, 0.06407134770607116, -0.09115754934299071, 0.1534393020242226]
    eef = np.array([0.4, -0.1, 0.25, *(-np.array(q)), 0.8])  # a w < 0 quaternion: same rotation
    expected = [0.4, -0.1, 0.25, 0.0640713477060712, -0.09115754934299058, 0.15343930202422276,
                0.9818561728660811, 0.19999999999999996]
    assert np.allclose(fractal_state(eef), expected, atol=1e-12, rtol=0)
    # an unnormalised quaternion is normalised (the release's quat2mat -> mat2quat does)
    assert np.allclose(fractal_state(np.array([0, 0, 0, 2.0, 0, 0, 0, 1.0])), [0, 0, 0, 0, 0, 0, 1, 0])


def test_bridge_state() -> None:
    qd = [0.7692449803001358, -0.05621557410884664, 0.630873524092247, 0.08426485691013454]
    state = bridge_state(np.array([0.3, 0.0, 0.1, *qd, 0.6]))
    expected = [0.3, 0.0, 0.1, 0.02023447342119738, -0.19898739791873918, 0.19798005985585768, 0.0, 0.6]
    assert np.allclose(state, expected, atol=1e-12, rtol=0)
    # the top-down default orientation (quaternion of D) is roll = pitch = yaw = 0
    top = bridge_state(np.array([0, 0, 0, math.sqrt(0.5), 0, math.sqrt(0.5), 0, 1.0]))
    assert np.allclose(top, [0, 0, 0, 0, 0, 0, 0, 1.0])


def test_euler_round_trip_and_gimbal_lock() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        rpy = rng.uniform([-3, -1.5, -3], [3, 1.5, 3])
        assert np.allclose(matrix_to_euler_sxyz(quat_to_matrix(euler_sxyz_to_quat(*rpy))), rpy)
    locked = matrix_to_euler_sxyz(np.array([[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]]))
    assert np.allclose(locked, [0.0, math.pi / 2, 0.0])


def test_crop_box() -> None:
    assert crop_box(256, 320, 0.95) == (6, 8, 243, 304)
    assert crop_box(256, 256, 0.95) == (6, 6, 243, 243)


def _reference_pipeline(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """The release's client_process steps, spelled out with PIL: resize (PIL default: bicubic),
    torchvision F.crop (PIL crop) and F.resize (PIL bilinear)."""
    base = Image.fromarray(img).resize((width, height))
    h, w = base.size[1], base.size[0]
    ch, cw = int(h * 0.95), int(w * 0.95)
    top, left = (h - ch) // 2, (w - cw) // 2
    base = base.crop((left, top, left + cw, top + ch))
    return np.asarray(base.resize((w, h), Image.BILINEAR))


@pytest.mark.parametrize(("shape", "size"), [((512, 640), (320, 256)), ((480, 640), (256, 256))])
def test_preprocess_image(shape, size) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    out = preprocess_image(img, size[0], size[1], 0.95)
    assert out.shape == (size[1], size[0], 3) and out.dtype == np.uint8
    assert np.array_equal(out, _reference_pipeline(img, *size))
    # a flat image stays flat; a vertical stripe at the edge is cropped away
    flat = np.full((*shape, 3), 77, dtype=np.uint8)
    assert np.all(preprocess_image(flat, size[0], size[1], 0.95) == 77)
    edge = flat.copy()
    edge[:, :8] = 255  # 8 source columns = 4 (Google) or 3.2 (WidowX) resized columns < crop offset
    assert np.all(preprocess_image(edge, size[0], size[1], 0.95)[:, :, 0] == 77)


def test_with_transforms3d_states_and_actions_are_the_release_clients_bit_for_bit(monkeypatch) -> None:
    """The release computes with transforms3d on the simulator's float32 pose and the chunk's float32
    values; the state's bits feed the per-request seed, so the harness must do exactly that."""
    t3d = pytest.importorskip("transforms3d.quaternions")
    from transforms3d.euler import euler2axangle, mat2euler

    from mibot_eval.suites import simpler_convert as sc

    assert sc.conversion_backend() == "transforms3d"
    rng = np.random.default_rng(3)
    down = np.array([[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]])
    fallback_gap = 0.0
    for _ in range(200):
        quat = rng.normal(size=4)
        eef = np.concatenate([rng.normal(size=3), quat / np.linalg.norm(quat), [rng.uniform()]])
        eef = eef.astype(np.float32)  # ManiSkill2's dtype
        fractal = np.concatenate((eef[:3], t3d.mat2quat(t3d.quat2mat(eef[3:7]))[[1, 2, 3, 0]], [1 - eef[7]]))
        assert sc.fractal_state(eef).tobytes() == fractal.tobytes()
        rpy = mat2euler(t3d.quat2mat(eef[3:7]) @ down.T)
        bridge = np.concatenate([eef[:3], rpy, [0.0, eef[7]]])
        assert sc.bridge_state(eef).tobytes() == bridge.tobytes()
        action = rng.uniform(-1, 1, size=7).astype(np.float32)
        axis, angle = euler2axangle(*action[3:6])
        gripper = np.clip(-(action[6] * 2 - 1), -1, 1)
        expected = np.concatenate([action[:3], axis * angle, [gripper]])
        assert sc.model_to_env_action(action, "google_relative").tobytes() == expected.tobytes()
        with monkeypatch.context() as m:  # without transforms3d: the numpy versions (float64 inside)
            m.setattr(sc, "_transforms3d", lambda: None)
            fallback_gap = max(fallback_gap, float(np.abs(sc.fractal_state(eef) - fractal).max()),
                               float(np.abs(sc.bridge_state(eef) - bridge).max()))
    assert fallback_gap < 1e-6  # float32 rounding: close, but the seeds would differ
