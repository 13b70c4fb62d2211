"""Every protocol parameter of the LIBERO suites and the checkpoint registry, as the release states them."""

from __future__ import annotations

import pytest

from mibot_eval.config import load_checkpoints, load_suite, resolve_checkpoint, suites_dir
from mibot_eval.errors import UserError

LIBERO_MAX_STEPS = {  # release eval_libero: max steps after the 10 wait steps
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}


@pytest.mark.parametrize("name,max_steps", sorted(LIBERO_MAX_STEPS.items()))
def test_libero_protocol_parameters(name: str, max_steps: int) -> None:
    s = load_suite(name)
    p = s.params
    assert s.benchmark == "libero" and s.adapter == "libero"
    assert s.max_steps == max_steps
    assert s.episodes_per_task == 50
    assert s.num_tasks == (90 if name == "libero_90" else 10)
    assert s.seed == 7
    assert s.replan_steps == 10
    assert s.action_dim == 7
    assert s.control_hz == 20
    assert s.execution == "sync"
    assert s.default_robot_type == "libero_all"
    assert s.hold_action == (0, 0, 0, 0, 0, 0, -1)
    assert p["wait_steps"] == 10
    assert p["wait_action"] == [0, 0, 0, 0, 0, 0, -1]
    assert p["init_state"] == "trial_index"
    assert p["task_suite"] == name
    env = p["env"]
    assert (env["camera_height"], env["camera_width"]) == (256, 256)
    assert env["rotate_180"] is True
    assert env["hard_reset"] is True
    assert env["camera_names"] == ["agentview", "robot0_eye_in_hand"]
    assert list(env["views"].items()) == [
        ("Base View", "agentview_image"),
        ("Left-Wrist View", "robot0_eye_in_hand_image"),
    ]
    assert env["state_layout"] == [
        ["robot0_eef_pos", 3],
        ["robot0_eef_quat_axis_angle", 3],
        ["robot0_gripper_qpos", 2],
    ]
    assert p["instruction_format"] == {"capitalize": "python", "append_period": True}
    assert p["scene_reset"] == "fresh_env_seeded"  # release run_trial: new env, env.seed(7), one reset
    rule = s.request_seed
    assert rule.images == (("Base View", "base"), ("Left-Wrist View", "wrist_left"))
    assert rule.state_shape == (32,) and rule.language == "instruction"


@pytest.mark.parametrize("name,shape,language,views", [
    ("calvin_abc_d", (32,), "instruction", ("base", "wrist_left")),
    ("calvin_abcd_d", (32,), "instruction", ("base", "wrist_left")),
    ("simpler_google_vm", (1, 1, 32), "prompt", ("base",)),
    ("simpler_google_va", (1, 1, 32), "prompt", ("base",)),
    ("simpler_widowx", (1, 1, 32), "prompt", ("base",)),
])
def test_request_seed_rules(name: str, shape: tuple, language: str, views: tuple) -> None:
    """protocols.md "Per-request noise seed": the dict each release client hashes."""
    rule = load_suite(name).request_seed
    assert rule.state_shape == shape and rule.language == language
    assert tuple(key for _, key in rule.images) == views


def test_bad_request_seed_rules_fail_with_one_line(tmp_path) -> None:
    text = (suites_dir() / "libero_spatial.yaml").read_text()
    for old, new, match in [
        ("  language: instruction ", "  language: words ", "request_seed.language"),
        ("  state_shape: [32]", "  state_shape: [0]", "state_shape"),
        ("  append_period: true ", "  append_period: false ", "append_period: true"),
        ("  capitalize: python ", "  capitalize: title ", "capitalize"),
    ]:
        path = tmp_path / "bad.yaml"
        assert old in text, old
        path.write_text(text.replace(old, new))
        with pytest.raises(UserError, match=match):
            load_suite(str(path))


def test_protocol_hash_changes_with_overrides() -> None:
    s = load_suite("libero_spatial")
    assert s.protocol_hash() == load_suite("libero_spatial").protocol_hash()
    assert s.with_overrides(max_steps=20).protocol_hash() != s.protocol_hash()
    assert s.with_overrides(max_steps=None) == s


def test_released_checkpoints_and_reported_numbers() -> None:
    ckpts = load_checkpoints()
    robot_types = {
        "XiaomiRobotics/Xiaomi-Robotics-0-LIBERO": "libero_all",
        "XiaomiRobotics/Xiaomi-Robotics-0-Calvin-ABCD_D": "calvin_abcd_orig",
        "XiaomiRobotics/Xiaomi-Robotics-0-Calvin-ABC_D": "calvin_abc_orig",
        "XiaomiRobotics/Xiaomi-Robotics-0-SimplerEnv-Google-Robot": "fractal_delta",
        "XiaomiRobotics/Xiaomi-Robotics-0-SimplerEnv-WidowX": "bridge_delta",
        "XiaomiRobotics/Xiaomi-Robotics-0": None,
    }
    by_repo = {c.repo: c for c in ckpts.values() if c.repo}
    assert {repo: by_repo[repo].robot_type for repo in robot_types} == robot_types
    libero = by_repo["XiaomiRobotics/Xiaomi-Robotics-0-LIBERO"].reported
    assert {k: v["success"] for k, v in libero.items() if "success" in v} == {
        "libero_spatial": 98.8, "libero_object": 100.0, "libero_goal": 98.8, "libero_10": 97.2,
    }
    assert libero["libero"]["average"] == 98.7
    abc = by_repo["XiaomiRobotics/Xiaomi-Robotics-0-Calvin-ABC_D"].reported["calvin_abc_d"]
    assert [abc[f"chain_{i}"] for i in range(1, 6)] == [100.0, 98.3, 96.0, 92.6, 88.1]
    assert abc["avg_len"] == 4.75
    abcd = by_repo["XiaomiRobotics/Xiaomi-Robotics-0-Calvin-ABCD_D"].reported["calvin_abcd_d"]
    assert [abcd[f"chain_{i}"] for i in range(1, 6)] == [99.7, 98.0, 96.7, 94.2, 91.8]
    assert abcd["avg_len"] == 4.80
    google = by_repo["XiaomiRobotics/Xiaomi-Robotics-0-SimplerEnv-Google-Robot"].reported
    assert google["simpler_google_vm"]["average"] == 85.5
    assert google["simpler_google_va"]["average"] == 74.7
    widowx = by_repo["XiaomiRobotics/Xiaomi-Robotics-0-SimplerEnv-WidowX"].reported
    assert widowx["simpler_widowx"]["average"] == 79.2
    assert ckpts["tiny"].tiny


def test_checkpoint_lookup_by_name_repo_and_unknown() -> None:
    assert resolve_checkpoint("Xiaomi-Robotics-0-LIBERO").robot_type == "libero_all"
    assert resolve_checkpoint("XiaomiRobotics/Xiaomi-Robotics-0-LIBERO").name == (
        "Xiaomi-Robotics-0-LIBERO"
    )
    with pytest.raises(UserError, match="unknown checkpoint 'nope'"):
        resolve_checkpoint("nope")


def test_unknown_suite_is_one_clear_line() -> None:
    with pytest.raises(UserError) as err:
        load_suite("libero_nope")
    assert "unknown suite 'libero_nope'" in str(err.value) and "libero_spatial" in str(err.value)
    assert "\n" not in str(err.value)


def test_malformed_yaml_is_one_clear_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmax_steps: [1, 2\n")
    with pytest.raises(UserError) as err:
        load_suite(str(bad))
    assert "malformed YAML" in str(err.value) and "\n" not in str(err.value)


def test_missing_or_mistyped_field(tmp_path) -> None:
    text = (load_suite("libero_spatial").source and open(load_suite("libero_spatial").source).read())
    missing = tmp_path / "missing.yaml"
    missing.write_text(text.replace("max_steps: 220", "# no max steps"))
    with pytest.raises(UserError, match="missing required field 'max_steps'"):
        load_suite(str(missing))
    typed = tmp_path / "typed.yaml"
    typed.write_text(text.replace("max_steps: 220", "max_steps: lots"))
    with pytest.raises(UserError, match="'max_steps' must be int"):
        load_suite(str(typed))
