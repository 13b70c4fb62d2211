"""The SimplerEnv adapter against the stand-in env (tests/simpler_standin.py): no SAPIEN needed."""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.config import load_suite
from mibot_eval.errors import UserError
from mibot_eval.run.episode import run_episode
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig
from mibot_eval.suites.simpler import SimplerAdapter
from mibot_eval.suites.simpler_convert import (
    bridge_state,
    conversion_backend,
    fractal_state,
    preprocess_image,
)
from tests.fakes import RecordingPolicy
from tests.simpler_standin import StandinBackend, make_assets


def make_adapter(tmp_path, suite="simpler_google_vm", render="lazy", done_fn=None, deleted=None,
                 skip=(), **overrides):
    protocol = load_suite(suite).with_overrides(**overrides)
    listing = SimplerAdapter(protocol, backend=StandinBackend(tmp_path))  # to list the episodes
    asset_dir = make_assets(tmp_path, [e for task in listing._tasks for e in task], skip=skip)
    backend = StandinBackend(asset_dir, done_fn=done_fn, deleted=deleted)
    return SimplerAdapter(protocol, render=render, backend=backend), backend


def spec_of(adapter, task_id, trial=0):
    return adapter.episodes(tasks=[task_id], episodes_per_task=trial + 1)[trial]


def run(adapter, spec, max_steps=None):
    policy = RecordingPolicy(horizon=4, scale=0.5)
    sched = ChunkScheduler(ExecutionConfig("sync", 4), adapter.protocol.hold_action)
    result = run_episode(adapter, policy, spec, sched, adapter.protocol.default_robot_type,
                         max_steps or adapter.protocol.max_steps)
    return result, policy


def test_reset_builds_the_episode_env_as_the_release_does(tmp_path) -> None:
    adapter, backend = make_adapter(tmp_path)
    spec = spec_of(adapter, 2, trial=5)  # an open-drawer episode with a real-image overlay
    episode = adapter.episode_for(spec)
    adapter.reset(spec)
    built = backend.built[-1]
    expected = {k: v for k, v in episode.env_kwargs.items() if k != "rgb_overlay_path"}
    assert {k: v for k, v in built.items() if k != "rgb_overlay_path"} == expected
    overlay = episode.env_kwargs["rgb_overlay_path"].split("ManiSkill2_real2sim/data/")[1]
    assert built["rgb_overlay_path"] == str(backend.asset_dir / overlay)
    raw = backend.envs[-1].unwrapped
    assert raw.reset_calls == [{"seed": None, "options": episode.reset_options}]  # no seed, as released
    adapter.reset(spec_of(adapter, 0))  # a new episode closes the previous env and builds a fresh one
    assert raw.closed and len(backend.envs) == 2


def test_observation_layout(tmp_path) -> None:
    adapter, backend = make_adapter(tmp_path)
    obs = adapter.reset(spec_of(adapter, 0))
    raw = backend.envs[-1].unwrapped
    assert list(obs.images) == ["Ego View"]
    assert obs.images["Ego View"].shape == (256, 320, 3) and obs.images["Ego View"].dtype == np.uint8
    camera = np.clip(raw._render()[..., :3] * 255, 0, 255).astype(np.uint8)
    assert np.array_equal(obs.images["Ego View"], preprocess_image(camera, 320, 256, 0.95))
    assert np.array_equal(adapter.video_frame(), camera)  # videos: the raw 640x512 camera frame
    assert obs.state.dtype == np.float64 and obs.state.shape == (8,)  # float64, as the client sends it
    assert obs.state.tobytes() == fractal_state(raw.eef).tobytes()
    assert obs.instruction == "Pick coke can."

    widowx, wbackend = make_adapter(tmp_path / "w", suite="simpler_widowx")
    obs = widowx.reset(spec_of(widowx, 0))
    assert list(obs.images) == ["Base View"] and obs.images["Base View"].shape == (256, 256, 3)
    assert obs.state.tobytes() == bridge_state(wbackend.envs[-1].unwrapped.eef).tobytes()
    assert obs.instruction == "Put carrot on plate."


def test_actions_are_converted_and_executed(tmp_path) -> None:
    adapter, backend = make_adapter(tmp_path)
    adapter.reset(spec_of(adapter, 0))
    chunk = np.zeros((4, 32), dtype=np.float32)
    chunk[:, 0] = 1.0
    chunk[:, 6] = 1.0  # model: open -> Google relative command -1
    actions = adapter.to_env_actions(chunk)
    assert actions.shape == (4, 7) and np.allclose(actions[:, 6], -1.0)
    raw = backend.envs[-1].unwrapped
    x0 = raw.eef[0]
    adapter.step(actions[0], observe=False)
    assert np.isclose(raw.eef[0], x0 + 0.01) and raw.eef[7] == 0.0


def test_instruction_is_reread_every_step(tmp_path) -> None:
    """put-in-drawer switches its instruction after 100 steps; each query sees the current one."""
    adapter, _ = make_adapter(tmp_path)
    result, policy = run(adapter, spec_of(adapter, 4))
    assert result.steps == 200 and not result.success  # the episode's own limit (max_episode_steps)
    instructions = [seen[2] for seen in policy.seen]
    assert len(instructions) == 50  # a query every 4 steps
    # the switch happens inside step 101 (the env forces it once 100 steps have run), so the first
    # query after it is the one at step index 104 (the 27th)
    assert instructions[:26] == ["Open top drawer."] * 26
    assert instructions[26:] == ["Place apple into top drawer."] * 24
    assert result.metrics["instructions"] == [[0, "open top drawer"], [101, "place apple into top drawer"]]


def test_episode_ends_at_its_own_limit(tmp_path) -> None:
    adapter, _ = make_adapter(tmp_path)
    assert adapter.protocol.max_steps == 200
    result, policy = run(adapter, spec_of(adapter, 0))  # pick coke can: max_episode_steps 80
    assert (result.steps, result.success, len(policy.seen)) == (80, False, 20)
    assert result.metrics["episode_max_steps"] == 80 and result.metrics["env_steps"] == 80
    result, _ = run(adapter, spec_of(adapter, 2))  # open drawer: 113
    assert result.steps == 113


def flicker(env) -> bool:
    """done at steps 10 and 11 only (an object put down, then knocked off again)."""
    return env.elapsed_steps in (10, 11)


def test_success_first_done_ends_the_episode_at_the_first_done(tmp_path) -> None:
    adapter, _ = make_adapter(tmp_path, done_fn=flicker)
    assert adapter.success_rule == "first_done"  # the release's client: break on done, return done
    result, _ = run(adapter, spec_of(adapter, 0))
    assert (result.success, result.steps) == (True, 10)
    assert result.metrics["first_done_step"] == 10 and result.metrics["done_at_last_step"] is True


def test_success_final_step_is_done_at_the_last_step(tmp_path) -> None:
    adapter, _ = make_adapter(tmp_path, done_fn=flicker)
    adapter.success_rule = "final_step"
    result, _ = run(adapter, spec_of(adapter, 0))
    assert (result.success, result.steps) == (False, 80)  # done was true at 10-11, not at step 80
    assert result.metrics["first_done_step"] == 10 and result.metrics["done_at_last_step"] is False

    late, _ = make_adapter(tmp_path / "late", done_fn=lambda env: env.elapsed_steps >= 70)
    late.success_rule = "final_step"
    result, _ = run(late, spec_of(late, 0))
    assert (result.success, result.steps) == (True, 80)


def test_lazy_rendering_matches_eager(tmp_path) -> None:
    eager, eager_backend = make_adapter(tmp_path / "e", render="eager")
    lazy, lazy_backend = make_adapter(tmp_path / "l", render="lazy")
    spec = spec_of(eager, 1, trial=3)
    res_e, pol_e = run(eager, spec)
    res_l, pol_l = run(lazy, spec)
    assert (res_e.steps, res_e.success) == (res_l.steps, res_l.success) == (80, False)
    assert pol_e.seen == pol_l.seen and len(pol_l.seen) == 20  # same pixels, states, instructions
    assert np.array_equal(eager_backend.envs[-1].unwrapped.eef, lazy_backend.envs[-1].unwrapped.eef)
    assert eager_backend.envs[-1].unwrapped.renders == 1 + 80  # reset + every step
    assert lazy_backend.envs[-1].unwrapped.renders == 1 + 19  # reset + the steps before a query
    assert lazy.renders == 20


def test_video_recording_renders_every_step(tmp_path) -> None:
    adapter, backend = make_adapter(tmp_path)
    adapter.record_video = True
    frames = []
    sched = ChunkScheduler(ExecutionConfig("sync", 4), adapter.protocol.hold_action)
    policy = RecordingPolicy(horizon=4, scale=0.5)
    run_episode(adapter, policy, spec_of(adapter, 0), sched, "fractal_delta", 8, on_frame=frames.append)
    assert len(frames) == 9 and frames[0].shape == (512, 640, 3)
    assert backend.envs[-1].unwrapped.renders == 9
    assert not np.array_equal(frames[0], frames[8])


def test_widowx_idle_steps_keep_the_last_gripper_command(tmp_path) -> None:
    """hold_gripper: last — an idle (hold) step repeats the last executed gripper command."""
    adapter, backend = make_adapter(tmp_path, suite="simpler_widowx")
    adapter.reset(spec_of(adapter, 0))
    raw = backend.envs[-1].unwrapped
    assert adapter.protocol.hold_gripper == "last"
    sched = ChunkScheduler(ExecutionConfig("async", 4, delay="fixed", delay_steps=4),
                           adapter.protocol.hold_action, adapter.protocol.hold_gripper)
    assert sched.query_due()
    closing = np.zeros((4, 7))
    closing[:, 6] = -1.0  # close
    sched.submit(closing, 0.0)
    for _ in range(4):
        adapter.step(sched.next_action()[0], observe=False)
    assert sched.query_due()
    sched.submit(closing, 0.0)  # arrives 4 steps later: the robot idles 4 steps meanwhile
    for _ in range(4):
        action, idle = sched.next_action()
        assert idle and action[6] == -1.0 and not action[:6].any()
        adapter.step(action, observe=False)
    assert raw.eef[7] == 0.0  # still closed through the idle steps


def test_repeat_marking_in_episode_metrics(tmp_path) -> None:
    adapter, _ = make_adapter(tmp_path, suite="simpler_widowx")
    specs = adapter.episodes(tasks=[2])
    result, _ = run(adapter, specs[24], max_steps=4)
    assert result.metrics["repeat_of"] == "simpler_widowx/2/0"
    assert result.metrics["reference_index"] == 120 and result.metrics["task_suite"] == (
        "bridge/put_spoon_on_table_cloth"
    )
    result, _ = run(adapter, specs[0], max_steps=4)
    assert result.metrics["repeat_of"] is None


def test_describe_for_the_manifest(tmp_path) -> None:
    adapter, _ = make_adapter(tmp_path)
    assert adapter.describe() == {
        "backend": "standin", "episode_list": "mibot_eval/data/simplerenv/fractal.json.gz",
        "render": "lazy", "success_rule": "first_done", "conversions": conversion_backend(),
    }


def test_unknown_render_mode_and_wrong_episode(tmp_path) -> None:
    with pytest.raises(UserError, match="render mode"):
        SimplerAdapter(load_suite("simpler_widowx"), render="fast", backend=StandinBackend(tmp_path))
    adapter, _ = make_adapter(tmp_path)
    other = spec_of(make_adapter(tmp_path / "w", suite="simpler_widowx")[0], 0)
    with pytest.raises(UserError, match="not an episode of simpler_google_vm"):
        adapter.reset(other)
