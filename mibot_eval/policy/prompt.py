"""Model inputs that do not need torch: the official prompt and state padding.

Sources: the Xiaomi-Robotics-0 release's deploy/eval clients (multi-view prompt with `/no_cot`,
state zero-padded to the model's 32 dims). The per-request seed lives in policy/seed.py.
"""

from __future__ import annotations

import numpy as np

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
    """Zero-pad a raw state vector to the model's width, shaped (1, width), keeping float64.

    The release's clients send a float64 state that the server casts once, straight to the model
    dtype; a float32 step in between could round differently.
    """
    state = np.asarray(state).reshape(-1)
    if state.size > width:
        raise ValueError(f"state has {state.size} dims, more than the model's {width}")
    padded = np.zeros((1, width), dtype=np.float64)
    padded[0, : state.size] = state
    return padded
