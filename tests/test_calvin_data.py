"""CALVIN data shipped with the package, start states, hashing and instructions (no simulator)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml

from mibot_eval.config import load_suite
from mibot_eval.suites.base import format_instruction
from mibot_eval.suites.calvin import (
    DATA_DIR,
    START_ROBOT_OBS,
    condition_seed,
    fnv1_32,
    load_annotations,
    load_sequences,
    start_state,
)
from tests.conftest import SHARED

REFERENCE = SHARED / "reference" / "xiaomi-robotics-0" / "calvin"
DATA_FILES = ("eval_sequences.json", "new_playtable_tasks.yaml", "new_playtable_validation.yaml")


@pytest.mark.parametrize("name", DATA_FILES)
def test_shipped_data_equals_the_release_files(name: str) -> None:
    if not REFERENCE.is_dir():
        pytest.skip("shared reference data not present")
    assert (DATA_DIR / name).read_bytes() == (REFERENCE / name).read_bytes()


def test_sequence_file_shape() -> None:
    sequences = load_sequences(DATA_DIR / "eval_sequences.json")
    assert len(sequences) == 1000
    assert all(len(subtasks) == 5 for _, subtasks in sequences)
    conditions = {json.dumps(c, sort_keys=True) for c, _ in sequences}
    assert len(conditions) == 192  # protocols.md: 192 distinct start states
    first, subtasks = sequences[0]
    # CALVIN's generator key order, which the hash seed depends on
    assert list(first) == ["led", "lightbulb", "slider", "drawer", "red_block", "blue_block",
                           "pink_block", "grasped"]
    assert subtasks == ("rotate_blue_block_right", "move_slider_right", "lift_red_block_slider",
                        "place_in_slider", "turn_off_lightbulb")


def test_fnv1_32_matches_pyhash_test_vectors() -> None:
    # pyhash's own tests (flier/pyfasthash tests/test_fnv1.py): b"test", seeded with its hash, u"test"
    assert fnv1_32(b"test") == 3698262380
    assert fnv1_32(b"test", seed=3698262380) == 660137056
    assert fnv1_32("test".encode("utf-16-le")) == 3910690890
    # the standard FNV-1 32 vector (offset basis as seed): "a" -> 0x050c5d7e
    assert fnv1_32(b"a", seed=0x811C9DC5) == 0x050C5D7E


def test_condition_seed_of_sequence_0() -> None:
    condition, _ = load_sequences(DATA_DIR / "eval_sequences.json")[0]
    assert str(condition.values()) == (
        "dict_values([1, 1, 'left', 'open', 'slider_left', 'table', 'slider_right', 0])"
    )
    assert condition_seed(condition) == 2138410836


def test_start_state_of_sequence_0() -> None:
    condition, _ = load_sequences(DATA_DIR / "eval_sequences.json")[0]
    robot_obs, scene_obs = start_state(condition)
    assert robot_obs.shape == (15,) and np.array_equal(robot_obs, np.array(START_ROBOT_OBS))
    assert robot_obs[14] == 1.0  # gripper action: open
    # computed with CALVIN's get_env_state_for_initial_condition (mees/calvin fa03f01)
    expected = [
        0.28, 0.22, 0.0, 0.088, 1.0, 1.0,
        -0.240851662, 0.0924044687, 0.460990009, 0.0, 0.0, 1.8859410064104645,
        0.229995412, -0.11999514, 0.45999001, 0.0, 0.0, 1.488143437705632,
        0.070341633, 0.0924044687, 0.460990009, 0.0, 0.0, 1.4683986863194542,
    ]
    assert scene_obs.tolist() == expected


def test_all_start_states_match_calvin_bit_for_bit() -> None:
    """SHA-256 over (robot_obs, scene_obs) float64 bytes of all 1000 sequences, as produced by
    CALVIN's own get_env_state_for_initial_condition (with pyhash.fnv1_32) in the verification run."""
    digest = hashlib.sha256()
    for condition, _ in load_sequences(DATA_DIR / "eval_sequences.json"):
        robot_obs, scene_obs = start_state(condition)
        assert robot_obs.dtype == scene_obs.dtype == np.float64
        digest.update(robot_obs.tobytes())
        digest.update(scene_obs.tobytes())
    assert digest.hexdigest() == "0789732599c9f93d6506018704c1717b42d9ce8921a430403964813f3c1ebd71"


def test_start_state_places_blocks_by_condition() -> None:
    base = {"led": 0, "lightbulb": 0, "slider": "right", "drawer": "closed",
            "red_block": "table", "blue_block": "table", "pink_block": "slider_left", "grasped": 0}
    _, scene = start_state(base)
    assert scene[:6].tolist() == [0, 0, 0, 0, 0, 0]
    table = {tuple(scene[6:9]), tuple(scene[12:15])}
    assert len(table) == 2 and all(abs(p[1] + 0.12) < 1e-4 for p in table)  # two distinct table spots
    assert scene[18:21].tolist() == [-2.40851662e-01, 9.24044687e-02, 4.60990009e-01]
    for yaw in scene[[11, 17, 23]]:
        assert np.pi / 2 - np.pi / 8 <= yaw <= np.pi / 2 + np.pi / 8
    on = dict(base, led=1, lightbulb=1, slider="left", drawer="open")
    _, scene = start_state(on)
    assert scene[:6].tolist() == [0.28, 0.22, 0.0, 0.088, 1.0, 1.0]


def test_annotations_and_instruction_format() -> None:
    annotations = load_annotations(DATA_DIR / "new_playtable_validation.yaml")
    assert len(annotations) == 34
    rule = load_suite("calvin_abc_d").params["instruction_format"]
    for text in annotations.values():
        # the release: val_annotations[subtask][0].capitalize() + "."
        assert format_instruction(text, rule) == text.capitalize() + "."
    assert format_instruction(annotations["open_drawer"], rule) == "Pull the handle to open the drawer."
    tasks = yaml.safe_load((DATA_DIR / "new_playtable_tasks.yaml").read_text())
    assert tasks["_target_"] == "calvin_env.envs.tasks.Tasks" and set(tasks["tasks"]) == set(annotations)
