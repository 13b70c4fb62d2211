"""The transformers policy on the tiny checkpoint: the release's loading path, batching, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.errors import UserError
from mibot_eval.types import Observation, PolicyRequest

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def policy(tiny_checkpoint):
    from mibot_eval.policy.hf import HFPolicy

    return HFPolicy(tiny_checkpoint, device="cpu")


def _request(i: int, robot_type: str = "libero_all", prefix=None) -> PolicyRequest:
    rng = np.random.default_rng(i)
    images = {
        "Base View": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
        "Left-Wrist View": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
    }
    obs = Observation(images, rng.normal(size=8).astype(np.float32), f"Pick up object {i}.")
    return PolicyRequest(obs, robot_type, prefix=prefix)


def test_runtime_follows_the_release_rule(policy) -> None:
    d = policy.describe()
    assert (d["device"], d["dtype"], d["attn_implementation"]) == ("cpu", "float32", "sdpa")
    assert d["batched_per_sample_seed"] and d["prefix_actions"]


def test_chunk_shape_and_decoding(policy) -> None:
    chunk = policy.infer([_request(0)])[0]
    assert chunk.shape == (10, 32) and chunk.dtype == np.float32
    # dims beyond the 7 active ones decode to the mean (std 0): constant across the chunk
    assert np.allclose(chunk[:, 7:], chunk[0, 7:])
    assert policy.infer([_request(0, "bridge_delta")])[0].shape == (4, 32)


def test_same_inputs_same_actions_and_seed_depends_on_inputs(policy) -> None:
    a = policy.infer([_request(1)])[0]
    b = policy.infer([_request(1)])[0]
    c = policy.infer([_request(2)])[0]
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_batched_equals_one_by_one(policy) -> None:
    requests = [_request(i) for i in range(5)]
    batched = policy.infer(requests)
    single = [policy.infer([r])[0] for r in requests]
    for x, y in zip(batched, single, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_prefix_is_kept(policy) -> None:
    plain = policy.infer([_request(3)])[0]
    prefix = plain[:3, :7] + 0.01
    with_prefix = policy.infer([_request(3, prefix=prefix)])[0]
    np.testing.assert_allclose(with_prefix[:3, :7], prefix, atol=1e-4)


def test_unknown_robot_type_is_a_clear_error(policy) -> None:
    with pytest.raises(UserError, match="no robot type 'nope'"):
        policy.infer([_request(0, "nope")])
