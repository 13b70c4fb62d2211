"""The official prompt, state padding and per-request seeds."""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.policy.prompt import build_prompt, pad_state, request_seed
from mibot_eval.suites.base import format_instruction
from mibot_eval.types import Observation

OFFICIAL_TWO_VIEW = (
    "<|im_start|>user\nThe following observations are captured from multiple views.\n"
    "# Base View\n<|vision_start|><|image_pad|><|vision_end|>\n"
    "# Left-Wrist View\n<|vision_start|><|image_pad|><|vision_end|>\n"
    "Generate robot actions for the task:\nPick up the bowl. /no_cot<|im_end|>\n"
    "<|im_start|>assistant\n<cot></cot><|im_end|>\n"
)


def test_two_view_prompt_is_the_official_one() -> None:
    assert build_prompt(["Base View", "Left-Wrist View"], "Pick up the bowl.") == OFFICIAL_TWO_VIEW


def test_one_view_prompt() -> None:
    prompt = build_prompt(["Ego View"], "open the drawer")
    assert "# Ego View\n<|vision_start|><|image_pad|><|vision_end|>\nGenerate" in prompt
    assert prompt.count("<|image_pad|>") == 1


def test_instruction_format() -> None:
    rule = {"capitalize_first": True, "append_period": True}
    assert format_instruction("put the bowl on the plate", rule) == "Put the bowl on the plate."
    assert format_instruction("Open it.", rule) == "Open it."
    assert format_instruction("keep As is", {}) == "keep As is"


def test_pad_state() -> None:
    padded = pad_state(np.arange(8, dtype=np.float64))
    assert padded.shape == (1, 32) and padded.dtype == np.float32
    assert padded[0, :8].tolist() == list(range(8)) and not padded[0, 8:].any()
    with pytest.raises(ValueError):
        pad_state(np.zeros(33))


def _obs(value: int = 0, text: str = "go") -> Observation:
    image = np.full((4, 4, 3), value, dtype=np.uint8)
    return Observation({"Base View": image}, np.zeros(8, np.float32), text)


def test_seed_is_deterministic_and_sensitive_to_every_input() -> None:
    seed = request_seed(_obs(), "libero_all")
    assert seed == request_seed(_obs(), "libero_all") and 0 <= seed < 2**32
    assert seed != request_seed(_obs(1), "libero_all")
    assert seed != request_seed(_obs(text="stop"), "libero_all")
    assert seed != request_seed(_obs(), "bridge_delta")
    moved = _obs()
    moved.state[0] = 1e-3
    assert seed != request_seed(moved, "libero_all")
