"""Model inputs that do not need torch: the official prompt, state padding, per-request seeds.

Sources: the Xiaomi-Robotics-0 release's deploy/eval clients (multi-view prompt with `/no_cot`,
state zero-padded to the model's 32 dims, SHA-256 seed over the request's inputs).
"""

from __future__ import annotations

import hashlib

import numpy as np

from mibot_eval.types import Observation

MODEL_STATE_DIM = 32  # the released checkpoints' state/action width
MULTI_VIEW_HEADER = "The following observations are captured from multiple views.\n"
IMAGE_SLOT = "<|vision_start|><|image_pad|><|vision_end|>"


def build_prompt(view_labels: list[str], instruction: str) -> str:
    """The release's chat prompt: one `# <label>` section per image, then the task, no CoT."""
    views = "".join(f"# {label}\n{IMAGE_SLOT}\n" for label in view_labels)
    return (
        "<|im_start|>user\n"
        f"{MULTI_VIEW_HEADER}{views}"
        f"Generate robot actions for the task:\n{instruction} /no_cot<|im_end|>\n"
        "<|im_start|>assistant\n<cot></cot><|im_end|>\n"
    )


def pad_state(state: np.ndarray, width: int = MODEL_STATE_DIM) -> np.ndarray:
    """Zero-pad a raw state vector to the model's width, shaped (1, width) float32."""
    state = np.asarray(state, dtype=np.float32).reshape(-1)
    if state.size > width:
        raise ValueError(f"state has {state.size} dims, more than the model's {width}")
    padded = np.zeros((1, width), dtype=np.float32)
    padded[0, : state.size] = state
    return padded


def request_seed(observation: Observation, robot_type: str) -> int:
    """Deterministic flow-matching seed: SHA-256 over state, image digests, language, robot type."""
    digest = hashlib.sha256()
    digest.update(np.asarray(observation.state, dtype=np.float32).tobytes())
    for label, image in observation.images.items():
        digest.update(label.encode())
        digest.update(hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest())
    digest.update(observation.instruction.encode())
    digest.update(robot_type.encode())
    return int.from_bytes(digest.digest(), "big") % 2**32
