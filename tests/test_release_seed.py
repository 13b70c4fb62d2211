"""The release's per-request seed, bit for bit, from the suites' own rules.

`seed_vectors.json` (shared/reference) holds inputs and the seed the release client's own function
computed for them. Each vector is rebuilt here the way the harness builds a request: an Observation
as the adapter hands it to the policy (raw float64 state, views by prompt label, the instruction as
formatted, with its "."), the robot type, and the suite YAML's `request_seed` rule.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from mibot_eval.config import load_suite
from mibot_eval.policy.prompt import build_prompt
from mibot_eval.policy.seed import canonical_json, model_inputs, release_seed
from mibot_eval.types import Observation
from tests.conftest import SHARED

VECTORS = SHARED / "reference" / "xiaomi-robotics-0" / "seed_vectors.json"
SUITE_OF = {"libero": "libero_spatial", "calvin": "calvin_abc_d"}
RAW_DIMS = {"libero": 8, "calvin": 7, "simplerenv": 8}
TASK_MARK, END_MARK = "Generate robot actions for the task:\n", " /no_cot"


def _image(rule: str) -> np.ndarray:
    """'((arange(H*W*3) * K) % 251) as uint8, shape (H,W,3)' -> the array."""
    head, shape = rule.split(" as uint8, shape ")
    k = int(head.split("*")[-1].split(")")[0])
    h, w, c = (int(x) for x in shape.strip("()").split(","))
    return ((np.arange(h * w * c) * k) % 251).astype(np.uint8).reshape(h, w, c)


def _vectors() -> list[dict]:
    return json.loads(VECTORS.read_text())


def _suite(vector: dict) -> str:
    if vector["suite"] != "simplerenv":
        return SUITE_OF[vector["suite"]]
    return "simpler_google_vm" if vector["task_id"] == "fractal_delta" else "simpler_widowx"


def _observation(vector: dict, suite: str) -> Observation:
    rule = load_suite(suite).request_seed
    state = np.asarray(vector["state"], dtype=np.float64).reshape(-1)
    raw = state[: RAW_DIMS[vector["suite"]]]
    assert not state[raw.size:].any()  # the rest is the client's zero padding
    images = {label: _image(vector[key]["rule"]) for label, key in rule.images}
    if rule.language == "prompt":
        prompt = vector["language"]
        instruction = prompt[prompt.index(TASK_MARK) + len(TASK_MARK): prompt.index(END_MARK)]
    else:
        instruction = vector["language"] + "."  # the client appends it after hashing
    return Observation(images, raw, instruction)


@pytest.mark.parametrize("index", range(7))
def test_every_seed_vector_reproduces(index: int) -> None:
    vector = _vectors()[index]
    suite = _suite(vector)
    rule = load_suite(suite).request_seed
    observation = _observation(vector, suite)
    assert release_seed(observation, vector["task_id"], rule) == vector["seed"]
    inputs = model_inputs(observation, vector["task_id"], rule)
    assert inputs["state"].dtype == np.float64 and list(inputs["state"].shape) == vector["state_shape"]
    assert inputs["language"] == vector["language"]


def test_all_three_benchmarks_are_covered() -> None:
    assert {v["suite"] for v in _vectors()} == {"libero", "calvin", "simplerenv"}
    assert {_suite(v) for v in _vectors()} >= {"libero_spatial", "calvin_abc_d", "simpler_google_vm",
                                                "simpler_widowx"}


def test_the_simpler_prompt_is_the_one_the_release_hashes() -> None:
    for vector in _vectors():
        if vector["suite"] == "simplerenv":
            suite = _suite(vector)
            observation = _observation(vector, suite)
            assert build_prompt(list(observation.images), observation.instruction) == vector["language"]


def test_canonical_json_layout() -> None:
    observation = Observation({"Base View": np.zeros((1, 2, 3), np.uint8)}, np.array([0.5]), "Go é.")
    rule = load_suite("libero_spatial").request_seed
    rule = type(rule)(images=(("Base View", "base"),), state_shape=(2,), language="instruction")
    text = canonical_json(model_inputs(observation, "libero_all", rule))
    md5 = hashlib.md5(bytes(6)).hexdigest()
    assert text == (
        '{"base":{"__type__":"PIL.Image","content_hash":"' + md5 + '",'
        '"mode":"RGB","size":[2,1]},"language":"Go é",'
        '"state":{"__type__":"numpy","data":"000000000000e03f0000000000000000","dtype":"float64",'
        '"shape":[2]},"task_id":"libero_all"}'
    )


def test_a_float32_state_would_change_the_seed() -> None:
    """Why the state stays float64: the hash covers its bytes and dtype."""
    vector = _vectors()[0]
    observation = _observation(vector, "libero_spatial")
    rule = load_suite("libero_spatial").request_seed
    as_float32 = Observation(observation.images, observation.state.astype(np.float32).astype(np.float64),
                             observation.instruction)
    assert release_seed(as_float32, "libero_all", rule) != vector["seed"]
