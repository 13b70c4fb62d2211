"""The LIBERO adapter on the real simulator: protocol facts and lazy-rendering equivalence."""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.config import load_suite
from mibot_eval.run.episode import run_episode
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig
from mibot_eval.suites.libero import LiberoAdapter, quat_to_axis_angle
from tests.fakes import RecordingPolicy

pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")


@pytest.fixture(scope="module")
def eager() -> LiberoAdapter:
    adapter = LiberoAdapter(load_suite("libero_spatial"), render="eager")
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def lazy() -> LiberoAdapter:
    adapter = LiberoAdapter(load_suite("libero_spatial"), render="lazy")
    yield adapter
    adapter.close()


def _run(adapter: LiberoAdapter, trial: int, max_steps: int = 25):
    spec = adapter.episodes(tasks=[0], episodes_per_task=trial + 1)[trial]
    policy = RecordingPolicy()
    sched = ChunkScheduler(ExecutionConfig("sync", 10), adapter.protocol.hold_action)
    result = run_episode(adapter, policy, spec, sched, "libero_all", max_steps)
    return result, policy, adapter.sim_state()


def test_lazy_rendering_is_bit_identical_to_eager(eager: LiberoAdapter, lazy: LiberoAdapter) -> None:
    first_seen = {}
    # two init states, out of order and repeated; the env is reused across episodes (hard resets)
    # and the two adapters interleave, yet every episode must be the same wherever it runs.
    for trial in (1, 0, 1):
        res_e, pol_e, state_e = _run(eager, trial)
        renders_before = lazy.renders
        res_l, pol_l, state_l = _run(lazy, trial)
        assert (res_l.success, res_l.steps) == (res_e.success, res_e.steps)
        assert len(pol_l.seen) == len(pol_e.seen) == 3  # queries at steps 0, 10, 20
        assert pol_l.seen == pol_e.seen  # same pixels, states and instruction at every query
        assert np.array_equal(state_l, state_e)
        # only the three queried observations were rendered, two cameras each
        assert lazy.renders - renders_before == 3 * 2
        assert pol_l.seen == first_seen.setdefault(trial, pol_l.seen)


def test_observation_layout(eager: LiberoAdapter) -> None:
    spec = eager.episodes(tasks=[0], episodes_per_task=1)[0]
    obs = eager.reset(spec)
    raw = eager._last_obs
    assert list(obs.images) == ["Base View", "Left-Wrist View"]
    for label, key in [("Base View", "agentview_image"), ("Left-Wrist View", "robot0_eye_in_hand_image")]:
        assert obs.images[label].shape == (256, 256, 3) and obs.images[label].dtype == np.uint8
        assert np.array_equal(obs.images[label], raw[key][::-1, ::-1])  # rotated 180 degrees
    expected = np.concatenate(
        [raw["robot0_eef_pos"], quat_to_axis_angle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"]]
    )
    assert obs.state.shape == (8,) and obs.state.dtype == np.float64  # as the release client sends it
    assert obs.state.tobytes() == expected.tobytes()
    assert obs.instruction == (
        "Pick up the black bowl between the plate and the ramekin and place it on the plate."
    )


def test_trial_i_uses_init_state_i_and_waits_with_the_noop(lazy: LiberoAdapter, monkeypatch) -> None:
    spec = lazy.episodes(tasks=[0], episodes_per_task=3)[2]
    steps: list[np.ndarray] = []
    lazy.reset(spec)  # builds the env for task 0 if needed
    env = lazy._env
    original_step = env.step
    initial: list[np.ndarray] = []
    original_set = env.set_init_state

    def spy_set(state):
        initial.append(np.array(state))
        return original_set(state)

    def spy_step(action):
        steps.append(np.array(action))
        return original_step(action)

    monkeypatch.setattr(env, "step", spy_step)
    monkeypatch.setattr(env, "set_init_state", spy_set)
    lazy.reset(spec)
    assert len(initial) == 1 and np.array_equal(initial[0], lazy._init_states[2])
    assert len(steps) == 10 and all(np.array_equal(a, [0, 0, 0, 0, 0, 0, -1]) for a in steps)


def test_episode_list_is_the_official_one(lazy: LiberoAdapter) -> None:
    specs = lazy.episodes()
    assert len(specs) == 10 * 50
    assert [s.trial for s in specs[:50]] == list(range(50))
    assert {s.seed for s in specs} == {7}
    assert specs[0].task_name.startswith("pick_up_the_black_bowl")


def test_quat_to_axis_angle() -> None:
    assert np.allclose(quat_to_axis_angle(np.array([0, 0, 0, 1.0])), 0)
    half = np.sqrt(0.5)
    assert np.allclose(quat_to_axis_angle(np.array([0, 0, half, half])), [0, 0, np.pi / 2])
    assert np.allclose(quat_to_axis_angle(np.array([1.0, 0, 0, 0])), [np.pi, 0, 0])
