"""The release client's per-request noise seed, bit for bit.

The Xiaomi-Robotics-0 clients (eval_libero/, eval_calvin/, eval_simplerenv/ main.py at 3c297b2)
derive each request's flow-matching seed from the `model_inputs` dict they are about to send, before
the seed is added: canonical JSON (sorted keys, separators "," and ":", non-ASCII kept), where a
numpy array is {"__type__": "numpy", "dtype", "shape", "data": its bytes in hex} and a PIL image is
{"__type__": "PIL.Image", "mode", "size": [width, height], "content_hash": md5 of its bytes};
seed = int(sha256(utf-8 JSON)) mod 2**32. Which keys the dict holds, the state's padded shape and
whether "language" is the instruction or the whole prompt differ per suite: `SeedRule`, from the
suite YAML's `request_seed`. protocols.md "Per-request noise seed" has the facts; the test vectors
in tests/test_release_seed.py were computed with the release's own function.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from mibot_eval.config import SeedRule
from mibot_eval.policy.prompt import build_prompt
from mibot_eval.types import Observation

SEED_MODULUS = 2**32


class ImageDigest:
    """An RGB image as the release's hash sees a PIL image: mode, (width, height), md5 of the bytes."""

    def __init__(self, image: np.ndarray) -> None:
        image = np.ascontiguousarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
        self.size = [int(image.shape[1]), int(image.shape[0])]
        self.content_hash = hashlib.md5(image.tobytes()).hexdigest()

    def as_json(self) -> dict[str, Any]:
        return {"__type__": "PIL.Image", "mode": "RGB", "size": self.size,
                "content_hash": self.content_hash}


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__type__": "numpy", "dtype": str(obj.dtype), "shape": list(obj.shape),
                "data": obj.tobytes().hex()}
    if isinstance(obj, ImageDigest):
        return obj.as_json()
    raise TypeError(f"{type(obj).__name__} is not part of a release model_inputs dict")


def canonical_json(inputs: Mapping[str, Any]) -> str:
    """The JSON text the release hashes."""
    return json.dumps(inputs, default=_encode, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_to_seed(inputs: Mapping[str, Any]) -> int:
    """seed = int(sha256(canonical JSON)) mod 2**32."""
    digest = hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest()
    return int(digest, 16) % SEED_MODULUS


def seed_language(observation: Observation, rule: SeedRule) -> str:
    """The "language" entry: the instruction before the client's "." (LIBERO, CALVIN) or the prompt."""
    if rule.language == "prompt":
        return build_prompt(list(observation.images), observation.instruction)
    text = observation.instruction
    return text[:-1] if text.endswith(".") else text


def padded_state(state: np.ndarray, rule: SeedRule) -> np.ndarray:
    """The state as the client sends it: float64, zero-padded, in the rule's shape."""
    raw = np.asarray(state).reshape(-1)
    if raw.size > rule.state_width:
        raise ValueError(f"state has {raw.size} dims, more than the model's {rule.state_width}")
    out = np.zeros(rule.state_width, dtype=np.float64)
    out[: raw.size] = raw
    return out.reshape(rule.state_shape)


def model_inputs(observation: Observation, robot_type: str, rule: SeedRule) -> dict[str, Any]:
    """The client's `model_inputs` dict (before "seed"), with images as their digests."""
    missing = [label for label, _ in rule.images if label not in observation.images]
    if missing:
        raise ValueError(f"the seed rule needs view(s) {missing}; "
                         f"the observation has {list(observation.images)}")
    inputs: dict[str, Any] = {
        "task_id": robot_type,
        "state": padded_state(observation.state, rule),
        "language": seed_language(observation, rule),
    }
    for label, key in rule.images:
        inputs[key] = ImageDigest(observation.images[label])
    return inputs


def release_seed(observation: Observation, robot_type: str, rule: SeedRule) -> int:
    """The seed the release's client would send with this observation."""
    return hash_to_seed(model_inputs(observation, robot_type, rule))


def default_rule(observation: Observation) -> SeedRule:
    """For a request built outside any suite: the LIBERO/CALVIN layout over its own views."""
    keys = ("base", "wrist_left")
    images = tuple((label, keys[i] if i < len(keys) else f"view{i}")
                   for i, label in enumerate(observation.images))
    return SeedRule(images=images, state_shape=(32,), language="instruction")
