"""MiBotProcessor: Qwen2 tokenizer + Qwen2-VL image processor + per-robot-type action statistics.

Remote code of the tiny offline stand-in for the Xiaomi-Robotics-0 checkpoints. Unlike the released
processor it has no video processor (which needs torchvision); videos are rejected.

* ``processor(text=[...], images=[...], padding=True, return_tensors="pt")``: images are a flat list in
  prompt order (all images of prompt 0, then prompt 1, ...); each ``<|image_pad|>`` is expanded to
  ``grid_t * grid_h * grid_w // merge_size**2`` image tokens, as the Qwen2-VL/Qwen3-VL processors do.
  Padding side is the tokenizer's, saved as ``"left"`` (what Qwen batched generation uses).
* Action statistics come from ``action_config`` in ``preprocessor_config.json``:
  ``{robot_type: {"mean": [[32 floats]] * T, "std": [[32 floats]] * T}}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

ACTIVE_STD = 1e-5  # dims whose std is at most this are inactive (masked out)


class MiBotProcessor(ProcessorMixin):
    attributes = ["image_processor", "tokenizer"]
    image_processor_class = "AutoImageProcessor"
    tokenizer_class = ("Qwen2Tokenizer", "Qwen2TokenizerFast")
    image_token = "<|image_pad|>"

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        action_config: dict[str, dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        if action_config is None:
            action_config = getattr(image_processor, "action_config", None) or {}
        self.action_config = action_config
        self._stats = {
            name: (np.asarray(s["mean"], dtype=np.float32), np.asarray(s["std"], dtype=np.float32))
            for name, s in action_config.items()
        }
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    def __call__(
        self,
        images: Any = None,
        text: str | list[str] | None = None,
        videos: Any = None,
        padding: bool | str = False,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if videos is not None:
            raise ValueError("this processor has no video processor; pass images")
        if text is None:
            raise ValueError("text is required")
        texts = [text] if isinstance(text, str) else list(text)
        image_inputs: dict[str, Any] = {}
        if images is not None:
            image_inputs = dict(self.image_processor(images=images, return_tensors=return_tensors))
            texts = self._expand_image_tokens(texts, image_inputs["image_grid_thw"])
        elif any(self.image_token in t for t in texts):
            raise ValueError(f"the prompts contain {self.image_token} but no images were given")
        text_inputs = self.tokenizer(texts, padding=padding, return_tensors=return_tensors, **kwargs)
        return BatchFeature(data={**text_inputs, **image_inputs}, tensor_type=return_tensors)

    def _expand_image_tokens(self, texts: list[str], grid_thw: Any) -> list[str]:
        merge = int(self.image_processor.merge_size) ** 2
        counts = [int(np.prod(np.asarray(g))) // merge for g in grid_thw]
        wanted = sum(t.count(self.image_token) for t in texts)
        if wanted != len(counts):
            raise ValueError(
                f"the prompts hold {wanted} {self.image_token} but {len(counts)} images were given"
            )
        placeholder = "<|mibot_placeholder|>"
        expanded, index = [], 0
        for t in texts:
            while self.image_token in t:
                t = t.replace(self.image_token, placeholder * counts[index], 1)
                index += 1
            expanded.append(t.replace(placeholder, self.image_token))
        return expanded

    # -- actions ------------------------------------------------------------------------------
    def list_robot_types(self) -> list[str]:
        return sorted(self._stats)

    def _robot_stats(self, robot_type: str) -> tuple[np.ndarray, np.ndarray]:
        if robot_type not in self._stats:
            raise KeyError(f"unknown robot_type {robot_type!r}; known: {', '.join(self.list_robot_types())}")
        return self._stats[robot_type]

    def get_action_mask(self, robot_type: str, batch_size: int = 1) -> torch.Tensor:
        """(batch_size, T, action_dim) bool: True where the robot type's action std > 1e-5."""
        _, std = self._robot_stats(robot_type)
        mask = torch.from_numpy(std > ACTIVE_STD)
        return mask[None].expand(batch_size, -1, -1).clone()

    def decode_action(self, actions: Any, robot_type: str) -> Any:
        """Normalized -> robot units: actions * std + mean over the last two dims (T, action_dim).

        A torch tensor comes back as a tensor (same device, fp32 or wider), anything else as numpy.
        Chunks shorter than the robot type's T use the first steps' statistics.
        """
        mean, std = self._robot_stats(robot_type)
        horizon = actions.shape[-2]
        if horizon > mean.shape[0]:
            raise ValueError(f"{robot_type} has statistics for {mean.shape[0]} steps, got {horizon}")
        mean, std = mean[:horizon], std[:horizon]
        if isinstance(actions, torch.Tensor):
            dtype = torch.promote_types(actions.dtype, torch.float32)
            m = torch.from_numpy(mean).to(actions.device, dtype)
            s = torch.from_numpy(std).to(actions.device, dtype)
            return actions.to(dtype) * s + m
        return np.asarray(actions, dtype=np.float32) * std + mean

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.tokenizer.model_input_names) + list(self.image_processor.model_input_names)
        return list(dict.fromkeys(names))


__all__ = ["MiBotProcessor"]
