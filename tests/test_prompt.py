"""The official prompt, state padding and per-request seeds."""

from __future__ import annotations

import numpy as np
import pytest

from mibot_eval.policy.prompt import build_prompt, pad_state
from mibot_eval.suites.base import format_instruction

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


def test_instruction_format_follows_the_release_clients() -> None:
    libero = {"capitalize": "python", "append_period": True}  # str.capitalize() + "."
    assert format_instruction("put the bowl on the plate", libero) == "Put the bowl on the plate."
    assert format_instruction("open the TOP drawer", libero) == "Open the top drawer."  # rest lowered
    assert format_instruction("Open it.", libero) == "Open it.."  # the client always appends
    simpler = {"capitalize": "first_letter", "append_period": True}  # text[0].upper() + text[1:] + "."
    assert format_instruction("pick coke can", simpler) == "Pick coke can."
    assert format_instruction("open TOP drawer", simpler) == "Open TOP drawer."
    assert format_instruction(" keep As is", {}) == " keep As is"


def test_pad_state_keeps_float64() -> None:
    state = np.array([0.1, 1 / 3, 2.0**-30 + 1.0], dtype=np.float64)
    padded = pad_state(state)
    assert padded.shape == (1, 32) and padded.dtype == np.float64
    assert padded[0, :3].tobytes() == state.tobytes() and not padded[0, 3:].any()
    with pytest.raises(ValueError):
        pad_state(np.zeros(33))


