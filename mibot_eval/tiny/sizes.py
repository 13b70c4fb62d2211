"""Dimensions of the generated checkpoints: `tiny` (about 1.3 MB) and `release` (Xiaomi-Robotics-0's).

`release` is the Qwen3-VL-4B backbone of Qwen/Qwen3-VL-4B-Instruct's published config.json (text:
hidden 2560, 36 layers, 32 attention heads, 8 KV heads, head_dim 128, MLP 9728, vocab 151936, tied
embeddings, interleaved M-RoPE [24, 20, 20] at theta 5e6; vision: depth 24, hidden 1024, 16 heads, MLP
4096, patch 16, spatial merge 2, temporal patch 2, out hidden 2560, deepstack layers [5, 11, 17]) and
its image processor (patch 16, 256*256 to 4096*4096 pixels, mean/std 0.5), plus a 16-layer DiT at
hidden 1024 reading the KV cache of the last 16 VLM layers (protocols.md: 4.72B parameters =
Qwen3-VL-4B 4.44B + DiT 0.28B). The release does not publish the DiT's inner widths: its 8 KV heads
of 128 must match the VLM's KV cache, its 8 query heads make the attention width its hidden 1024, and
its MLP width (2880) is chosen so that this head structure has the published 0.28B parameters.
Transformers' own Qwen3VLConfig defaults are NOT the 4B model (they describe a hidden-4096 text model
and a depth-27 vision tower), so every dimension is spelled out.
The tokenizer is the tiny one in both sizes (about 66 text tokens for a LIBERO prompt; the image
tokens dominate: 64 per 256x256 view at the release size).
"""

from __future__ import annotations

import math
from typing import Any

from mibot_eval.tiny.stats import ACTION_DIM

SIZES = ("tiny", "release")
# Published parameter counts of the released model (protocols.md, "The model interface").
RELEASE_PARAMETERS = {"total": 4.72e9, "vlm": 4.44e9, "dit": 0.28e9}

# Image processor: (patch, spatial merge, temporal patch, min pixels, max pixels) per size.
IMAGE_SETTINGS: dict[str, tuple[int, int, int, int, int]] = {
    "tiny": (8, 2, 2, 32 * 32, 64 * 64),  # at most 64x64 pixels -> 16 tokens for a 256x256 view
    "release": (16, 2, 2, 256 * 256, 4096 * 4096),  # Qwen3-VL: 64 tokens for a 256x256 view
}

_TEXT = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 4096,
        "rope_theta": 5000000.0,
        "rope_scaling": {"rope_type": "default", "mrope_section": [4, 2, 2], "mrope_interleaved": True},
        "tie_word_embeddings": False,
    },
    "release": {
        "vocab_size": 151936,
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "attention_bias": False,
        "max_position_embeddings": 262144,
        "rope_theta": 5000000.0,
        "rope_scaling": {"rope_type": "default", "mrope_section": [24, 20, 20], "mrope_interleaved": True},
        "tie_word_embeddings": True,
    },
}
_VISION = {
    "tiny": {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    },
    "release": {
        "depth": 24,
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_heads": 16,
        "hidden_act": "gelu_pytorch_tanh",
        "in_channels": 3,
        "out_hidden_size": 2560,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [5, 11, 17],
    },
}
_DIT = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "frequency_embedding_size": 32,
    },
    "release": {
        "hidden_size": 1024,
        "intermediate_size": 2880,
        "num_hidden_layers": 16,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "frequency_embedding_size": 256,
    },
}


def check_size(size: str) -> str:
    """`size` if known, else ValueError naming the known ones."""
    if size not in SIZES:
        raise ValueError(f"unknown checkpoint size {size!r}; known: {', '.join(SIZES)}")
    return size


def model_config(token_ids: dict[str, int], size: str = "tiny", like_release: bool = False) -> dict[str, Any]:
    """Keyword arguments of `MiBoTConfig` for `size`, with the tokenizer's special token ids."""
    patch, merge, temporal, _, _ = IMAGE_SETTINGS[check_size(size)]
    text = {
        "vocab_size": 64 * math.ceil((max(token_ids.values()) + 1) / 64),
        **_TEXT[size],
        "bos_token_id": None,
        "eos_token_id": token_ids["<|im_end|>"],
    }
    if text["vocab_size"] <= max(token_ids.values()):
        raise ValueError("the tokenizer's ids do not fit the vocabulary")
    vision = {
        **_VISION[size],
        "patch_size": patch,
        "spatial_merge_size": merge,
        "temporal_patch_size": temporal,
    }
    vlm = {
        "text_config": text,
        "vision_config": vision,
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
        "tie_word_embeddings": _TEXT[size]["tie_word_embeddings"],
    }
    dit = {**_DIT[size], "action_dim": ACTION_DIM, "state_dim": ACTION_DIM}
    return {
        "vlm_config": vlm,
        "dit_config": dit,
        "num_inference_steps": 5,
        "release_interface": like_release,
    }


def parameter_counts(model: Any) -> dict[str, int]:
    """Parameters of a built model (meta tensors count too): total, the VLM backbone, the DiT head."""
    total = sum(p.numel() for p in model.parameters())
    vlm = sum(p.numel() for p in model.vlm.parameters())
    return {"total": total, "vlm": vlm, "dit": total - vlm}
