"""Every LIBERO trial is the release's trial, on the real simulator.

The reference here is written from the release's protocol (protocols.md "Scene per trial", "Per-request
noise seed"; eval_libero/main.py run_trial): a NEW OffScreenRenderEnv per trial, env.seed(7), one
reset, set_init_state(init_states[trial]), 10 no-op steps, then the first query: both images rotated
180 degrees, the float64 state (eef pos, axis-angle, gripper qpos, 24 zeros), the task language
.capitalize() with "." appended after hashing, and the seed = sha256 of the canonical JSON of the
client's model_inputs (PIL images by md5). The harness reuses one env per task, in any order of
trials and after a resume, and must match it on the placed bodies and on what the policy sees.
"""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
import pytest

from mibot_eval.config import load_suite
from mibot_eval.run.episode import run_episode
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig
from mibot_eval.suites.libero import LiberoAdapter, placed_bodies
from tests.fakes import RecordingPolicy

pytest.importorskip("libero", reason="LIBERO is installed by `make setup`")

TRIALS = (49, 1, 0, 2)  # out of order on purpose
NOOP = [0.0] * 6 + [-1.0]


def _axis_angle(quat: np.ndarray) -> np.ndarray:
    q = np.array(quat, dtype=np.float64)
    q[3] = min(max(q[3], -1.0), 1.0)
    den = np.sqrt(1.0 - q[3] * q[3])
    return np.zeros(3) if math.isclose(den, 0.0) else q[:3] * 2.0 * math.acos(q[3]) / den


def _release_seed(inputs: dict) -> int:
    from PIL import Image

    def encode(obj):
        if isinstance(obj, np.ndarray):
            return {"__type__": "numpy", "dtype": str(obj.dtype), "shape": obj.shape,
                    "data": obj.tobytes().hex()}
        if isinstance(obj, Image.Image):
            return {"__type__": "PIL.Image", "mode": obj.mode, "size": obj.size,
                    "content_hash": hashlib.md5(obj.tobytes()).hexdigest()}
        raise TypeError(type(obj))

    text = json.dumps(inputs, default=encode, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % 2**32


class ReleaseTrial:
    """One trial exactly as the release client starts it; `first_query()` is what it would send."""

    def __init__(self, suite: str, task_id: int, trial: int, observe: bool) -> None:
        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv

        task_suite = benchmark.get_benchmark_dict()[suite]()
        task = task_suite.get_task(task_id)
        bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        self.env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
        self.env.seed(7)
        self.env.reset()
        obs = self.env.set_init_state(task_suite.get_task_init_states(task_id)[trial])
        self.bodies = placed_bodies(self.env.env.sim)
        self.language = str(task.language)
        self.obs = obs
        if observe:
            for _ in range(10):
                self.obs, _, _, _ = self.env.step(NOOP)

    def second_draw(self) -> dict:
        """The placement a second reset draws (the old seed-once-per-task convention's trial 1)."""
        self.env.reset()
        return placed_bodies(self.env.env.sim)

    def first_query(self) -> tuple[dict[str, bytes], bytes, str, int]:
        from PIL import Image

        base = np.ascontiguousarray(self.obs["agentview_image"][::-1, ::-1])
        wrist = np.ascontiguousarray(self.obs["robot0_eye_in_hand_image"][::-1, ::-1])
        state = np.concatenate([self.obs["robot0_eef_pos"], _axis_angle(self.obs["robot0_eef_quat"]),
                                self.obs["robot0_gripper_qpos"], np.zeros(24)])
        language = self.language.capitalize()
        seed = _release_seed({"task_id": "libero_all", "state": state, "base": Image.fromarray(base),
                              "wrist_left": Image.fromarray(wrist), "language": language})
        images = {"Base View": base.tobytes(), "Left-Wrist View": wrist.tobytes()}
        return images, state[:8].tobytes(), language + ".", seed

    def close(self) -> None:
        self.env.close()


def _harness_first_query(adapter: LiberoAdapter, task_id: int, trial: int):
    spec = adapter.episodes(tasks=[task_id], episodes_per_task=trial + 1)[trial]
    policy = RecordingPolicy()
    scheduler = ChunkScheduler(ExecutionConfig("sync", 10), adapter.protocol.hold_action)
    result = run_episode(adapter, policy, spec, scheduler, "libero_all", 1,
                         seed_rule=adapter.protocol.request_seed)
    images, state, instruction = policy.seen[0]
    assert result.metrics["request_seeds"] == policy.seeds[:1]
    return images, state, instruction, policy.seeds[0]


def _bodies_after_reset(adapter: LiberoAdapter, task_id: int, trial: int) -> dict:
    adapter.reset(adapter.episodes(tasks=[task_id], episodes_per_task=trial + 1)[trial])
    return adapter.placed_bodies()


def _assert_same_placement(mine: dict, release: dict) -> None:
    assert mine.keys() == release.keys()
    for name in release:
        for field in ("pos", "quat"):
            assert mine[name][field] == release[name][field], (name, field)


@pytest.mark.parametrize("suite,task_id", [("libero_spatial", 0), ("libero_goal", 0)])
def test_placed_bodies_equal_a_fresh_env_seeded_7_in_any_order_and_after_a_resume(suite, task_id) -> None:
    """The release places a trial's fixtures before it loads the init state, from the first draw
    after seed 7: one fresh env gives the placement of every trial (model body_pos / body_quat)."""
    release = ReleaseTrial(suite, task_id, 0, observe=False)
    reference = release.bodies
    moved = [n for n, body in release.second_draw().items() if body["pos"] != reference[n]["pos"]]
    release.close()
    assert moved, "this task has no fixture placed at reset"  # so the check below can fail
    adapter = LiberoAdapter(load_suite(suite))
    try:
        for trial in TRIALS:
            _assert_same_placement(_bodies_after_reset(adapter, task_id, trial), reference)
    finally:
        adapter.close()
    resumed = LiberoAdapter(load_suite(suite))  # a rerun that starts mid-task
    try:
        _assert_same_placement(_bodies_after_reset(resumed, task_id, 2), reference)
    finally:
        resumed.close()


@pytest.mark.parametrize("suite,task_id,trial", [("libero_spatial", 0, 1), ("libero_goal", 0, 1)])
def test_the_first_query_is_the_release_clients_byte_for_byte(suite, task_id, trial) -> None:
    """Images, float64 state, prompt instruction and seed at the first query (trial 1: fixtures used
    to stand elsewhere from trial 1 on)."""
    release = ReleaseTrial(suite, task_id, trial, observe=True)
    try:
        expected = release.first_query()
        release_bodies = release.bodies
    finally:
        release.close()
    adapter = LiberoAdapter(load_suite(suite))
    try:
        _harness_first_query(adapter, task_id, 0)  # another trial first: history must not matter
        assert _harness_first_query(adapter, task_id, trial) == expected
    finally:
        adapter.close()
    if suite == "libero_spatial":  # `mibot-eval inspect` shows the same first query
        _check_inspect(suite, task_id, trial, expected, release_bodies)


def _check_inspect(suite, task_id, trial, expected, release_bodies) -> None:
    import contextlib
    import io

    from mibot_eval.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["inspect", suite, str(task_id), str(trial), "--json"]) == 0
    info = json.loads(out.getvalue())  # stdout is pure JSON (simulator chatter goes to stderr)
    images, state, instruction, seed = expected
    assert info["key"] == f"{suite}/{task_id}/{trial}" and info["release_seed"] == seed
    assert info["instruction"] == instruction and info["state_dtype"] == "float64"
    assert np.array(info["state"]).tobytes() == state
    for label, data in images.items():
        assert info["images"][label]["md5"] == hashlib.md5(data).hexdigest()
    assert {n: (b["pos"], b["quat"]) for n, b in info["scene"]["bodies"].items()} == {
        n: (b["pos"], b["quat"]) for n, b in release_bodies.items()}
    assert "/no_cot" in info["prompt"] and instruction in info["prompt"]


def _physics(env) -> np.ndarray:
    """The MjData integration state (time, qpos, qvel, act, warm start, ctrl, mocap, applied forces)."""
    import mujoco

    model, data = env.sim.model._model, env.sim.data._data
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(model, spec))
    mujoco.mj_getState(model, data, state, spec)
    return state


def _drive(step, trial: int, steps: int) -> list:
    """Random actions over the whole box (the gripper toggles), observing every 10th step."""
    rng = np.random.default_rng(1000 + trial)
    return [step(rng.uniform(-1.0, 1.0, 7), observe=(i % 10 == 9)) for i in range(steps)]


def _release_step(release: ReleaseTrial):
    def step(action, observe):
        obs, _, done, _ = release.env.step(action)
        images = tuple(obs[k][::-1, ::-1].tobytes() for k in ("agentview_image", "robot0_eye_in_hand_image"))
        state = np.concatenate([obs["robot0_eef_pos"], obs["robot0_gripper_qpos"]]).tobytes()
        return _physics(release.env.env).tobytes(), bool(done), images if observe else None, state
    return step


def _adapter_step(adapter: LiberoAdapter):
    def step(action, observe):
        result = adapter.step(action, observe)
        obs = adapter._last_obs
        images = None
        if observe:
            images = tuple(result.observation.images[v].tobytes() for v in ("Base View", "Left-Wrist View"))
        state = np.concatenate([obs["robot0_eef_pos"], obs["robot0_gripper_qpos"]]).tobytes()
        return _physics(adapter._env.env).tobytes(), result.success, images, state
    return step


STEPS = 30
_RELEASE_RUNS: dict[str, tuple[bytes, list]] = {}


def _release_trial_1(suite: str) -> tuple[bytes, list]:
    """A new env's trial 1 of task 0: its start state and STEPS driven steps (computed once)."""
    if suite not in _RELEASE_RUNS:
        release = ReleaseTrial(suite, 0, 1, observe=True)
        try:
            start = _physics(release.env.env).tobytes()
            _RELEASE_RUNS[suite] = start, _drive(_release_step(release), 1, STEPS)
        finally:
            release.close()
    return _RELEASE_RUNS[suite]


def _reused_trial_1(suite: str, trial_0_steps: int) -> tuple[bytes, list]:
    """The adapter's trial 1 of task 0 after trial 0 ran `trial_0_steps` random steps on the same env."""
    adapter = LiberoAdapter(load_suite(suite))
    try:
        specs = adapter.episodes(tasks=[0], episodes_per_task=2)
        adapter.reset(specs[0])
        _drive(_adapter_step(adapter), 0, trial_0_steps)
        assert adapter._scene is not None and adapter._scene.ready
        adapter.reset(specs[1])  # soft
        return _physics(adapter._env.env).tobytes(), _drive(_adapter_step(adapter), 1, STEPS)
    finally:
        adapter.close()


@pytest.mark.parametrize("suite", ["libero_spatial", "libero_10"])
def test_a_reused_scene_runs_whole_trials_as_a_new_env(suite) -> None:
    """The adapter soft resets every trial after a task's first (libero_reset.py). After another trial
    moved the arm and the gripper, trial 1 must equal a new env seeded 7: MjData integration state at
    every step, observed images, robot state, success (libero_spatial: a placed cabinet; libero_10:
    kitchen and living-room scenes)."""
    start, expected = _release_trial_1(suite)
    got_start, got = _reused_trial_1(suite, trial_0_steps=STEPS)
    assert got_start == start
    for i, (mine, theirs) in enumerate(zip(got, expected, strict=True)):
        assert mine == theirs, f"{suite} trial 1 step {i} differs from a new env"


def test_without_zeroing_the_gripper_a_soft_reset_diverges(monkeypatch) -> None:
    """The check above can fail: a soft reset that keeps a gripper's integrated command does."""
    import mibot_eval.suites.libero_reset as libero_reset

    monkeypatch.setattr(libero_reset, "fresh_gripper_command", np.ones)  # a stale current_action
    _, expected = _release_trial_1("libero_spatial")
    _, got = _reused_trial_1("libero_spatial", trial_0_steps=0)
    assert got != expected
