"""The CALVIN adapter against a stand-in env and oracle: protocol parameters, subtask chaining,
early stop, the 360-step limit, policy resets, lazy rendering, conversions, errors and metrics."""

from __future__ import annotations

import dataclasses
import sys
import types

import numpy as np
import pytest
import yaml
from PIL import Image

from mibot_eval.config import load_suite, suites_dir
from mibot_eval.errors import UserError
from mibot_eval.run.episode import run_episode
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig
from mibot_eval.suites import calvin_sim
from mibot_eval.suites.base import make_adapter
from mibot_eval.suites.calvin import (
    CalvinAdapter,
    binarize_gripper,
    calvin_summary,
    center_crop_resize,
    chain_rates,
    load_sequences,
    start_state,
    subtask_breakdown,
)
from tests.calvin_standin import ChunkPolicy, EnvFactory, StandInTasks

SUITES = ("calvin_abc_d", "calvin_abcd_d")
SEQ0 = ("rotate_blue_block_right", "move_slider_right", "lift_red_block_slider", "place_in_slider",
        "turn_off_lightbulb")


def make(thresholds=None, render="lazy", suite="calvin_abc_d", protocol=None, **kw):
    protocol = protocol or load_suite(suite)
    factory = EnvFactory(**kw.pop("env_kwargs", {}))
    oracle = StandInTasks(thresholds or {})
    adapter = CalvinAdapter(protocol, render=render, env_factory=factory, oracle=oracle, **kw)
    return adapter, factory, oracle


def spec_for(adapter, index):
    """The episode of the sequence at file index `index` (--tasks counts positions in the release order)."""
    return adapter.episodes(tasks=[adapter.order.index(index)])[0]


def run(adapter, seq=0, policy=None, max_steps=None):
    policy = policy or ChunkPolicy()
    spec = spec_for(adapter, seq)
    scheduler = ChunkScheduler(ExecutionConfig("sync", adapter.protocol.replan_steps),
                               adapter.protocol.hold_action)
    result = run_episode(adapter, policy, spec, scheduler, adapter.protocol.default_robot_type,
                         max_steps or adapter.protocol.max_steps)
    return result, adapter.episode_metrics(), policy


def seq0_thresholds(*steps):
    return dict(zip(SEQ0, steps, strict=False))


# -- protocol parameters ------------------------------------------------------------------------
EXPECTED = {
    "benchmark": "calvin", "adapter": "calvin", "num_tasks": 1000, "episodes_per_task": 1, "seed": 0,
    "max_steps": 1800, "replan_steps": 10, "action_dim": 7, "hold_action": (0.0,) * 7,
    "control_hz": 30.0, "execution": "sync",
}
EXPECTED_PARAMS = {
    "subtasks_per_sequence": 5, "subtask_max_steps": 360, "gripper_threshold": 0.0,
    "instruction_format": {"capitalize": "python", "append_period": True},
    "crop_ratio": 0.95, "resize_interpolation": "bilinear", "fresh_env_per_sequence": True,
    "sequence_order": {"shuffle_seed": 42},
    "calvin_env_commit": "797142c588c21e76717268b7b430958dbd13bf48",
    "env": {
        "scene": "calvin_scene_D", "robot": "panda_longer_finger", "cameras": ["static", "gripper"],
        "views": {"Base View": "rgb_static", "Left-Wrist View": "rgb_gripper"},
        "image_sizes": {"rgb_static": [200, 200], "rgb_gripper": [84, 84]}, "state_dims": 7,
    },
    "data": {"sequences": "eval_sequences.json", "annotations": "new_playtable_validation.yaml",
             "tasks": "new_playtable_tasks.yaml"},
}


@pytest.mark.parametrize("suite,robot_type", [("calvin_abc_d", "calvin_abc_orig"),
                                              ("calvin_abcd_d", "calvin_abcd_orig")])
def test_yaml_protocol_parameters(suite: str, robot_type: str) -> None:
    protocol = load_suite(suite)
    assert protocol.name == suite and protocol.default_robot_type == robot_type
    for key, value in EXPECTED.items():
        assert getattr(protocol, key) == value, key
    assert protocol.params == EXPECTED_PARAMS  # every CALVIN parameter is listed (and tested) here
    params = protocol.params
    assert protocol.max_steps == params["subtask_max_steps"] * params["subtasks_per_sequence"]
    # every protocol number carries a comment naming its source
    for line in (suites_dir() / f"{suite}.yaml").read_text().splitlines():
        key = line.split(":")[0].strip()
        if line.startswith(" ") or not key or line.startswith("#"):
            continue
        if key not in ("name", "benchmark", "adapter", "instruction_format", "request_seed", "env", "data",
                       "sequence_order"):
            assert "#" in line, f"{suite}: no source comment on {line!r}"


def test_the_two_splits_differ_only_in_name_and_robot_type() -> None:
    a, b = (yaml.safe_load((suites_dir() / f"{s}.yaml").read_text()) for s in SUITES)
    diff = {k for k in a if a[k] != b[k]}
    assert diff == {"name", "default_robot_type"}


def test_registry_builds_the_adapter_with_options() -> None:
    factory = EnvFactory()
    adapter = make_adapter(load_suite("calvin_abcd_d"), render="eager", env_factory=factory,
                           oracle=StandInTasks({}))
    assert isinstance(adapter, CalvinAdapter) and adapter.render_mode == "eager"
    assert adapter.env_config == "stand-in env"


# -- episodes -----------------------------------------------------------------------------------
RELEASE_FIRST_TEN = [776, 507, 895, 922, 33, 483, 85, 750, 354, 523]  # protocols.md, CALVIN order


def test_episodes_are_sequences_in_the_release_order() -> None:
    adapter, _, _ = make()
    specs = adapter.episodes()
    assert len(specs) == 1000 and sorted(s.task_id for s in specs) == list(range(1000))
    assert [s.task_id for s in specs[:10]] == RELEASE_FIRST_TEN  # random.seed(42); shuffle
    by_index = {s.task_id: s for s in specs}
    assert by_index[42].task_name == "seq0042" and by_index[42].key == "calvin_abc_d/42/0"
    assert {s.trial for s in specs} == {0} and {s.seed for s in specs} == {0}
    first = adapter.sequences[776][1]
    assert specs[0].instruction == " -> ".join(adapter.instruction(t) for t in first)
    assert [s.task_id for s in adapter.episodes(tasks=[7, 3])] == [750, 922]  # positions 7 and 3
    assert [s.task_id for s in adapter.episodes(tasks=list(range(10)))] == RELEASE_FIRST_TEN
    with pytest.raises(UserError, match="out of range"):
        adapter.episodes(tasks=[1000])
    with pytest.raises(UserError, match="episodes per sequence"):
        adapter.episodes(tasks=[0], episodes_per_task=2)


def test_reset_goes_to_the_sequence_start_state() -> None:
    adapter, factory, _ = make()
    spec = spec_for(adapter, 5)
    obs = adapter.reset(spec)
    condition, subtasks = load_sequences(adapter._tasks_yaml.parent / "eval_sequences.json")[5]
    robot_obs, scene_obs = start_state(condition)
    (env,) = factory.built
    assert len(env.resets) == 1
    assert np.array_equal(env.resets[0][0], robot_obs) and np.array_equal(env.resets[0][1], scene_obs)
    assert obs.instruction == adapter.instruction(subtasks[0])
    assert obs.instruction[0].isupper() and obs.instruction.endswith(".")
    state_after_reset = env.robot.get_observation()[0]  # reset steps the physics once, like calvin_env
    assert obs.state.dtype == np.float64  # as the release client sends it
    assert np.array_equal(obs.state, np.asarray(state_after_reset[:7], dtype=np.float64))


# -- chaining -----------------------------------------------------------------------------------
def test_five_subtasks_chain_with_a_policy_reset_at_each_switch() -> None:
    steps = (15, 10, 20, 5, 30)
    adapter, _, _ = make(seq0_thresholds(*steps))
    result, metrics, policy = run(adapter)
    assert result.success and result.steps == sum(steps)
    assert metrics["completed"] == 5 and metrics["outcome"] == "all_done"
    assert metrics["subtasks"] == list(SEQ0) and metrics["subtask_steps"] == list(steps)
    assert metrics["failed_subtask"] is None and metrics["sequence"] == 0
    assert metrics["env_config"] == "stand-in env"
    # the chunk in flight is dropped at every switch: ceil(steps / 10) queries per subtask
    per_subtask = [-(-s // 10) for s in steps]
    assert len(policy.requests) == sum(per_subtask) == 9
    instructions = [r.observation.instruction for r in policy.requests]
    expected = [adapter.instruction(t) for t, n in zip(SEQ0, per_subtask, strict=True) for _ in range(n)]
    assert instructions == expected
    assert instructions[0] == "Take the blue block and rotate it to the right."


def test_first_failure_ends_the_sequence_after_360_steps() -> None:
    adapter, _, oracle = make(seq0_thresholds(12, 7))  # subtask 3 never succeeds
    result, metrics, _ = run(adapter)
    assert not result.success and result.steps == 12 + 7 + 360
    assert metrics["completed"] == 2 and metrics["outcome"] == "subtask_timeout"
    assert metrics["failed_subtask"] == SEQ0[2] and metrics["subtask_steps"] == [12, 7, 360]
    assert oracle.calls == result.steps  # the oracle is asked after every env step


@pytest.mark.parametrize("threshold,completed", [(360, 1), (361, 0)])
def test_success_on_step_360_still_counts(threshold: int, completed: int) -> None:
    adapter, _, _ = make(seq0_thresholds(threshold))
    _, metrics, _ = run(adapter)
    assert metrics["completed"] == completed
    assert metrics["subtask_steps"][0] == 360


def test_reset_policy_is_reported_on_switch_with_the_new_observation() -> None:
    adapter, _, _ = make(seq0_thresholds(3, 4))
    adapter.reset(spec_for(adapter, 0))
    results = [adapter.step(np.array([1, 0, 0, 0, 0, 0, 1.0]), observe=False) for _ in range(3)]
    assert [r.reset_policy for r in results] == [False, False, True]
    switch = results[-1]
    assert not switch.success and not switch.done and switch.info == {"subtask_done": SEQ0[0]}
    assert switch.observation is not None  # rendered although observe=False
    assert switch.observation.instruction == adapter.instruction(SEQ0[1])
    assert results[0].observation is None  # lazy: nothing rendered when nobody reads it


def test_harness_step_limit_stops_a_sequence() -> None:
    adapter, _, _ = make(seq0_thresholds(10))
    result, metrics, _ = run(adapter, max_steps=25)
    assert result.steps == 25 and not result.success
    assert metrics["completed"] == 1 and metrics["outcome"] == "stopped"
    assert metrics["subtask_steps"] == [10, 15] and metrics["failed_subtask"] is None


def test_step_after_the_end_is_an_error() -> None:
    adapter, _, _ = make(seq0_thresholds(1, 1, 1, 1, 1))
    adapter.reset(spec_for(adapter, 0))
    for _ in range(5):
        last = adapter.step(np.array([1, 0, 0, 0, 0, 0, 1.0]), observe=True)
    assert last.success and last.done and last.observation is None  # nothing renders at the end
    with pytest.raises(RuntimeError):
        adapter.step(np.zeros(7), observe=False)


# -- env lifecycle ------------------------------------------------------------------------------
def test_fresh_env_per_sequence() -> None:
    adapter, factory, _ = make()
    for seq in (0, 1):
        adapter.reset(spec_for(adapter, seq))
    assert len(factory.built) == 2 and factory.built[0].closed and not factory.built[1].closed
    adapter.close()
    assert factory.built[1].closed


def test_env_reused_when_the_protocol_says_so() -> None:
    base = load_suite("calvin_abc_d")
    protocol = dataclasses.replace(base, params={**base.params, "fresh_env_per_sequence": False})
    adapter, factory, _ = make(protocol=protocol)
    for seq in (0, 1):
        adapter.reset(spec_for(adapter, seq))
    assert len(factory.built) == 1 and len(factory.built[0].resets) == 2


# -- lazy rendering -----------------------------------------------------------------------------
def test_lazy_rendering_matches_eager_and_renders_only_queried_steps() -> None:
    thresholds = seq0_thresholds(9, 14, 6)  # switches mid-chunk and on a chunk boundary
    outcomes = {}
    for mode in ("eager", "lazy"):
        adapter, factory, _ = make(thresholds, render=mode)
        result, metrics, policy = run(adapter, policy=ChunkPolicy(x=1.0, gripper=-0.3))
        env = factory.built[0]
        seen = [(tuple((k, v.tobytes()) for k, v in r.observation.images.items()),
                 r.observation.state.tobytes(), r.observation.instruction) for r in policy.requests]
        outcomes[mode] = (result.steps, metrics, seen, env.world.tcp.tobytes(), env.p.sim_steps,
                          [a.tobytes() for a in env.robot.applied], env.renders)
    eager, lazy = outcomes["eager"], outcomes["lazy"]
    assert lazy[:6] == eager[:6]  # same steps, metrics, observations, final state, physics, actions
    assert eager[6] == 2 * (1 + eager[0])  # eager renders both cameras at reset and every step
    queries = len(lazy[2])
    # lazy: reset + one render per later query (the switch renders are the queries' observations)
    assert lazy[6] == 2 * queries
    assert lazy[4] == 8 * lazy[0] + 1  # action_repeat physics steps per env step (+1 at reset)


def test_record_video_renders_every_step_and_returns_the_raw_static_view() -> None:
    adapter, factory, _ = make(seq0_thresholds(50))
    adapter.record_video = True
    adapter.reset(spec_for(adapter, 0))
    for _ in range(4):
        adapter.step(np.array([1, 0, 0, 0, 0, 0, 1.0]), observe=False)
    env = factory.built[0]
    assert env.renders == 2 * 5
    frame = adapter.video_frame()
    assert frame.shape == (200, 200, 3)
    assert np.array_equal(frame, env.get_obs()["rgb_obs"]["rgb_static"])  # uncropped


# -- conversions --------------------------------------------------------------------------------
def test_to_env_actions_first_seven_dims_and_binarised_gripper() -> None:
    adapter, _, _ = make()
    chunk = np.zeros((10, 32), dtype=np.float32)
    chunk[:, :6] = np.arange(6) * 0.1
    chunk[:, 6] = [0.0, 0.3, -2.0, 1e-6, -1e-6, 5, 1, -1, 0.5, -0.5]
    chunk[:, 7:] = 9.0
    env = adapter.to_env_actions(chunk)
    assert env.shape == (10, 7) and env.dtype == np.float64
    assert np.allclose(env[:, :6], np.arange(6) * 0.1)
    assert env[:, 6].tolist() == [-1, 1, -1, 1, -1, 1, 1, -1, 1, -1]  # > 0 -> +1 (open), else -1
    assert binarize_gripper(np.array([[0.0, 0.2]]), threshold=0.5).tolist() == [[0.0, -1.0]]


def test_actions_reach_the_env_as_float32_and_hold_keeps_the_gripper() -> None:
    adapter, factory, _ = make()
    adapter.reset(spec_for(adapter, 0))
    hold = np.asarray(adapter.protocol.hold_action)
    adapter.step(hold, observe=False)  # start state: gripper open (+1)
    adapter.step(np.array([0.1, 0, 0, 0, 0, 0, -1.0]), observe=False)
    adapter.step(hold, observe=False)
    applied = factory.built[0].robot.applied
    assert all(a.dtype == np.float32 for a in applied)
    assert [a[6] for a in applied] == [1.0, -1.0, -1.0]
    assert np.array_equal(applied[2][:6], np.zeros(6))
    with pytest.raises(ValueError, match="gripper"):
        adapter.step(np.array([0, 0, 0, 0, 0, 0, 0.5]), observe=False)


def test_crop_resize_known_output() -> None:
    # a frame exactly as wide as the crop margin disappears: 200 -> crop 190 at offset 5
    image = np.full((200, 200, 3), 200, dtype=np.uint8)
    image[:5], image[-5:], image[:, :5], image[:, -5:] = 0, 0, 0, 0
    assert np.array_equal(center_crop_resize(image, 0.95), np.full((200, 200, 3), 200, np.uint8))
    # 84 -> crop int(79.8) = 79 at offset (84 - 79) // 2 = 2
    small = np.full((84, 84, 3), 50, dtype=np.uint8)
    small[:2], small[-3:], small[:, :2], small[:, -3:] = 255, 255, 255, 255
    assert np.array_equal(center_crop_resize(small, 0.95), np.full((84, 84, 3), 50, np.uint8))
    # general case = PIL crop box (2, 2, 81, 81) resized back with bilinear interpolation
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(84, 84, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(noise).crop((2, 2, 81, 81)).resize((84, 84), Image.BILINEAR))
    assert np.array_equal(center_crop_resize(noise, 0.95), expected)
    assert not np.array_equal(center_crop_resize(noise, 0.95, "nearest"), expected)
    with pytest.raises(UserError, match="interpolation"):
        center_crop_resize(noise, 0.95, "lanczos3")


def test_observation_layout() -> None:
    adapter, factory, _ = make()
    obs = adapter.reset(spec_for(adapter, 0))
    raw = factory.built[0].get_obs()
    assert list(obs.images) == ["Base View", "Left-Wrist View"]
    for label, key, size in [("Base View", "rgb_static", 200), ("Left-Wrist View", "rgb_gripper", 84)]:
        assert np.array_equal(obs.images[label], center_crop_resize(raw["rgb_obs"][key], 0.95))
        assert obs.images[label].shape == (size, size, 3) and obs.images[label].dtype == np.uint8
    assert obs.state.tobytes() == np.asarray(raw["robot_obs"][:7], dtype=np.float64).tobytes()


def test_wrong_camera_size_is_a_clear_error() -> None:
    adapter, _, _ = make(env_kwargs={"static_size": 128})
    with pytest.raises(UserError, match="rgb_static renders"):
        adapter.reset(spec_for(adapter, 0))


# -- simulator setup ----------------------------------------------------------------------------
def test_missing_calvin_env_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "calvin_env", None)
    with pytest.raises(UserError) as err:
        CalvinAdapter(load_suite("calvin_abc_d"))
    message = str(err.value)
    assert "\n" not in message and "calvin_env" in message and "make setup-calvin" in message


def test_dataset_config_resolution(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(calvin_sim.DATASET_ENV_VAR, raising=False)
    assert calvin_sim.resolve_dataset_config(None) is None
    root = tmp_path / "task_ABC_D"
    config = root / "validation" / ".hydra" / "merged_config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("env: {}\n")
    for given in (root, root / "validation", config):
        assert calvin_sim.resolve_dataset_config(given) == config.resolve()
    monkeypatch.setenv(calvin_sim.DATASET_ENV_VAR, str(root))
    assert calvin_sim.resolve_dataset_config(None) == config.resolve()
    with pytest.raises(UserError, match="merged_config.yaml"):
        calvin_sim.resolve_dataset_config(tmp_path / "nowhere")


def test_env_config_source_is_recorded(tmp_path, monkeypatch) -> None:
    fake = types.SimpleNamespace(__file__=str(tmp_path / "calvin_env" / "__init__.py"))
    monkeypatch.setattr(calvin_sim, "import_calvin_env", lambda: fake)
    monkeypatch.delenv(calvin_sim.DATASET_ENV_VAR, raising=False)
    adapter = CalvinAdapter(load_suite("calvin_abc_d"), oracle=StandInTasks({}))
    assert adapter.env_config.startswith("calvin_env default config")
    assert "calvin_scene_D" in adapter.env_config
    info = adapter.describe()
    assert info["env_config"] == adapter.env_config and info["calvin_env_commit"] is None
    assert info["calvin_env_commit_expected"].startswith("797142c")
    config = tmp_path / "validation" / ".hydra" / "merged_config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("env: {}\n")
    monkeypatch.setenv(calvin_sim.DATASET_ENV_VAR, str(tmp_path))
    adapter = CalvinAdapter(load_suite("calvin_abc_d"), oracle=StandInTasks({}))
    assert adapter.env_config == f"dataset:{config.resolve()}"


def test_bad_parameters_are_user_errors() -> None:
    base = load_suite("calvin_abc_d")
    for params, match in [
        ({k: v for k, v in base.params.items() if k != "subtask_max_steps"}, "subtask_max_steps"),
        ({**base.params, "crop_ratio": 1.5}, "crop_ratio"),
        ({**base.params, "fresh_env_per_sequence": "yes"}, "fresh_env_per_sequence"),
    ]:
        with pytest.raises(UserError, match=match):
            make(protocol=dataclasses.replace(base, params=params))
    with pytest.raises(UserError, match="num_tasks"):
        make(protocol=dataclasses.replace(base, num_tasks=999))
    with pytest.raises(UserError, match="render mode"):
        make(render="sometimes")


# -- metrics ------------------------------------------------------------------------------------
def test_chain_rates_and_average_length() -> None:
    rates = chain_rates([5, 5, 3, 0, 1])
    assert rates == {"chain_1": 80.0, "chain_2": 60.0, "chain_3": 60.0, "chain_4": 40.0,
                     "chain_5": 40.0, "avg_len": 2.8}
    assert chain_rates([]) == {}


def test_subtask_breakdown_pairs_each_record_with_its_own_sequence() -> None:
    def record(completed, subtasks, status="ok"):
        return {"status": status, "metrics": {"completed": completed, "subtasks": subtasks}}

    records = [record(2, ["a", "b", "c", "d", "e"]), record(5, ["c", "a", "e", "b", "d"]),
               record(0, ["e", "d", "c", "b", "a"]), record(3, ["a", "a", "a", "a", "a"], status="error")]
    table = subtask_breakdown(reversed(records))  # order does not matter
    assert table == {"a": {"success": 2, "total": 2}, "b": {"success": 2, "total": 2},
                     "c": {"success": 1, "total": 2}, "d": {"success": 1, "total": 1},
                     "e": {"success": 1, "total": 2}}
    summary = calvin_summary(records)
    assert summary["sequences"] == 3 and summary["avg_len"] == pytest.approx(7 / 3)
    assert summary["chain_1"] == pytest.approx(200 / 3) and summary["subtasks"] == table


def test_one_live_env_per_process(monkeypatch) -> None:
    """Two calvin_env envs alive in one process render wrongly (pybullet's EGL plugin): building an
    env closes any other one, and an adapter whose env was closed that way rebuilds it."""
    built = EnvFactory()
    fake_hydra = types.ModuleType("hydra")
    fake_hydra.utils = types.SimpleNamespace(instantiate=lambda cfg, **kw: built())
    monkeypatch.setitem(sys.modules, "hydra", fake_hydra)
    monkeypatch.setattr(calvin_sim, "_LIVE_ENVS", [])
    base = load_suite("calvin_abc_d")
    reuse = dataclasses.replace(base, params={**base.params, "fresh_env_per_sequence": False})
    config = types.SimpleNamespace(env={})
    first = CalvinAdapter(reuse, env_factory=lambda: calvin_sim.build_env(config), oracle=StandInTasks({}))
    second = CalvinAdapter(base, env_factory=lambda: calvin_sim.build_env(config), oracle=StandInTasks({}))
    first.reset(spec_for(first, 0))
    second.reset(spec_for(second, 1))
    assert [env.closed for env in built.built] == [True, False]
    first.reset(spec_for(first, 2))  # its env was closed by the other adapter: rebuilt
    assert [env.closed for env in built.built] == [True, True, False]
    assert calvin_sim._LIVE_ENVS == [built.built[2]]
    first.close()
    second.close()  # already closed by the build above: a no-op, no second disconnect
    assert calvin_sim._LIVE_ENVS == [] and all(env.closed for env in built.built)
