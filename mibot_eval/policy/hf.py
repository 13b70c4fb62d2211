"""Xiaomi-Robotics-0 in process, through transformers remote code, exactly as the release serves it.

Loading (release deploy/server.py): CUDA: bf16 with flash_attention_2, then the whole model cast to
bf16 (`.cuda().to(torch.bfloat16)`: parameters or buffers that loading left in fp32 follow). Without
flash-attn sdpa is used and `describe()` says the run is not on the release's attention kernel.
CPU: fp32 with sdpa. Per request: the official prompt, pixel_values as the processor returns them
(moved, not cast), the float64 state zero-padded to 32 and cast once to the model dtype, the robot
type's action mask, the request's release seed, and processor.decode_action on the model's output.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.errors import UserError
from mibot_eval.policy.prompt import MODEL_STATE_DIM, build_prompt, pad_state
from mibot_eval.policy.seed import default_rule, release_seed
from mibot_eval.types import PolicyRequest


def _import_stack() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise UserError(f"model stack not installed ({exc}); run `make setup`") from None
    return torch, transformers


RELEASE_ATTENTION = "flash_attention_2"  # release deploy/server.py attn_implementation
MAX_ASPECT = 200  # Qwen2-VL's image processor refuses a longer side over 200x the shorter


def choose_runtime(device: str | None) -> tuple[str, str, str]:
    """(device, dtype name, attention implementation) following the release's rule."""
    torch, _ = _import_stack()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
        return device, "bfloat16", attn
    return device, "float32", "sdpa"


class HFPolicy:
    """A released (or tiny) Xiaomi-Robotics-0 checkpoint loaded with AutoModel/AutoProcessor."""

    def __init__(self, path: Path, device: str | None = None, num_steps: int | None = None) -> None:
        torch, transformers = _import_stack()
        self._torch = torch
        self.path = Path(path)
        self.device, dtype_name, self.attn = choose_runtime(device)
        self.dtype = getattr(torch, dtype_name)
        self.num_steps = num_steps
        self.processor = transformers.AutoProcessor.from_pretrained(
            str(self.path), trust_remote_code=True, use_fast=False
        )
        self.model = transformers.AutoModel.from_pretrained(
            str(self.path), trust_remote_code=True, attn_implementation=self.attn, dtype=self.dtype
        )
        self.model = self.model.to(self.device).to(self.dtype).eval()  # the release's final cast
        self.robot_types = set(self.processor.list_robot_types())
        self.per_sample_seed = bool(getattr(self.model, "supports_per_sample_seed", False))
        self.supports_prefix = bool(getattr(self.model, "supports_prefix_actions", False))
        self.last_latency_s = 0.0
        self._special: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "hf",
            "path": str(self.path),
            "device": self.device,
            "dtype": str(self.dtype).replace("torch.", ""),
            "attn_implementation": self.attn,
            "release_attention": self.attn == RELEASE_ATTENTION if self.device.startswith("cuda") else None,
            "num_steps": self.num_steps,
            "batched_per_sample_seed": self.per_sample_seed,
            "prefix_actions": self.supports_prefix,
        }

    def validate_request(self, request: PolicyRequest) -> None:
        """What this model accepts, checked before a request joins a batch (the policy server calls it
        at the door): ValueError with one line saying what is wrong."""
        if request.robot_type not in self.robot_types:
            raise ValueError(f"unknown robot_type {request.robot_type!r}")
        state = np.asarray(request.observation.state)
        if state.size > MODEL_STATE_DIM:
            raise ValueError(f"state has {state.size} dims, the model takes at most {MODEL_STATE_DIM}")
        with np.errstate(over="ignore"):
            finite = np.all(np.isfinite(state.astype(np.float32)))  # bf16 overflows where fp32 does
        if not finite:
            raise ValueError("state is not finite once cast to the model's dtype")
        factor = self._image_factor()
        for label, image in request.observation.images.items():
            h, w = image.shape[:2]
            if min(h, w) < factor or max(h, w) / min(h, w) > MAX_ASPECT:
                raise ValueError(f"image '{label}' is {h}x{w}: sides must be >= {factor} and the aspect "
                                 f"ratio at most {MAX_ASPECT}")
        special = self._special_tokens()
        for text in (request.observation.instruction, *request.observation.images):
            found = next((t for t in special if t in text), None)
            if found:
                raise ValueError(f"{text[:40]!r} contains the special token {found!r}")
        if request.prefix is not None:
            horizon = int(self.processor.get_action_mask(request.robot_type).shape[1])
            rows, dims = request.prefix.shape
            if rows > horizon or dims > MODEL_STATE_DIM:
                raise ValueError(f"prefix is {rows}x{dims}; the model takes at most {horizon} steps of "
                                 f"{MODEL_STATE_DIM} dims")

    def _image_factor(self) -> int:
        image = getattr(self.processor, "image_processor", None)
        return int(getattr(image, "patch_size", 14)) * int(getattr(image, "merge_size", 2))

    def _special_tokens(self) -> list[str]:
        if self._special is None:
            tokenizer = getattr(self.processor, "tokenizer", None)
            added = tokenizer.get_added_vocab() if tokenizer is not None else {}
            self._special = sorted({t for t in added if len(t) > 2} | {"<|image_pad|>", "<|vision_start|>"})
        return self._special

    def check_robot_type(self, robot_type: str) -> None:
        if robot_type not in self.robot_types:
            raise UserError(
                f"checkpoint {self.path} has no robot type '{robot_type}' "
                f"(it has: {', '.join(sorted(self.robot_types))})"
            )

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        """Decoded (T, 32) chunks, one per request; batched when the model seeds per sample."""
        start = time.perf_counter()
        if not requests:
            return []
        groups: list[list[int]] = []
        if self.per_sample_seed:
            by_key: dict[tuple[str, bool, tuple[str, ...]], list[int]] = {}
            for i, req in enumerate(requests):
                key = (req.robot_type, req.prefix is not None, tuple(req.observation.images))
                by_key.setdefault(key, []).append(i)
            groups = list(by_key.values())
        else:
            groups = [[i] for i in range(len(requests))]
        out: list[np.ndarray] = [np.empty(0)] * len(requests)
        for group in groups:
            for i, chunk in zip(group, self._forward([requests[i] for i in group]), strict=True):
                out[i] = chunk
        self.last_latency_s = time.perf_counter() - start
        return out

    def _normalize_prefix(self, prefix: np.ndarray, robot_type: str, horizon: int) -> np.ndarray:
        """Map committed env-unit actions into the model's normalized space via decode_action."""
        torch = self._torch
        zeros = torch.zeros(1, horizon, MODEL_STATE_DIM)
        mean = self.processor.decode_action(zeros, robot_type=robot_type)[0].float().numpy()
        std = self.processor.decode_action(zeros + 1, robot_type=robot_type)[0].float().numpy() - mean
        p = prefix.shape[0]
        full = np.zeros((p, MODEL_STATE_DIM), dtype=np.float32)
        full[:, : prefix.shape[1]] = prefix
        safe = np.where(np.abs(std[:p]) > 1e-5, std[:p], 1.0)
        return np.where(np.abs(std[:p]) > 1e-5, (full - mean[:p]) / safe, 0.0).astype(np.float32)

    def _forward(self, batch: list[PolicyRequest]) -> list[np.ndarray]:
        torch = self._torch
        robot_type = batch[0].robot_type
        self.check_robot_type(robot_type)
        from PIL import Image

        prompts = [build_prompt(list(r.observation.images), r.observation.instruction) for r in batch]
        images = [Image.fromarray(img) for r in batch for img in r.observation.images.values()]
        inputs = self.processor(text=prompts, images=images, padding=True, return_tensors="pt")
        state = np.stack([pad_state(r.observation.state) for r in batch])  # (B, 1, 32)
        mask = self.processor.get_action_mask(robot_type, batch_size=len(batch))
        seeds = [r.seed if r.seed is not None else release_seed(r.observation, robot_type,
                                                                 default_rule(r.observation))
                 for r in batch]
        kwargs: dict[str, Any] = {k: v.to(self.device) for k, v in inputs.items()}  # no dtype cast
        kwargs["state"] = torch.from_numpy(state).to(self.device, self.dtype)  # float64 -> dtype once
        if not bool(torch.isfinite(kwargs["state"]).all()):
            raise ValueError("state is not finite once cast to the model's dtype")
        kwargs["action_mask"] = torch.as_tensor(mask).to(self.device, self.dtype)
        kwargs["seed"] = seeds if self.per_sample_seed else seeds[0]
        if self.num_steps is not None:
            kwargs["num_steps"] = self.num_steps
        if self.supports_prefix and any(r.prefix is not None and len(r.prefix) for r in batch):
            horizon = int(kwargs["action_mask"].shape[1])
            empty = np.zeros((0, MODEL_STATE_DIM), dtype=np.float32)
            prefixes = [
                empty if r.prefix is None else self._normalize_prefix(r.prefix, robot_type, horizon)
                for r in batch
            ]
            longest = max(p.shape[0] for p in prefixes)
            padded = np.zeros((len(batch), longest, MODEL_STATE_DIM), dtype=np.float32)
            for row, p in zip(padded, prefixes, strict=True):
                row[: p.shape[0]] = p
            kwargs["prefix_actions"] = torch.from_numpy(padded).to(self.device, self.dtype)
            kwargs["prefix_length"] = [p.shape[0] for p in prefixes]
        with torch.inference_mode():
            actions = self.model(**kwargs).actions
        decoded = self.processor.decode_action(actions, robot_type=robot_type)  # as the server does
        chunks = [np.asarray(a, dtype=np.float32) for a in decoded.float().cpu().numpy()]
        if not all(np.isfinite(c).all() for c in chunks):
            raise ValueError("the model returned non-finite actions")
        return chunks
