"""MiBoTForActionGeneration: Qwen3-VL backbone + flow-matching DiT action head (tiny offline stand-in).

Interface (the released Xiaomi-Robotics-0 remote code's, plus one optional extra)::

    out = model(input_ids, attention_mask, pixel_values, image_grid_thw,   # from MiBotProcessor
                state=(B, S, 32), action_mask=(B, T, 32), seed=..., num_steps=5)
    out.actions  # (B, T, 32) normalized actions, masked dims are 0; decode with processor.decode_action

* ``seed`` (required) seeds the flow-matching noise. An int seeds every sample identically; a list,
  tuple or 1-D tensor of B ints seeds sample b with ``seed[b]``. The noise of sample b is
  ``torch.randn((T, 32), generator=torch.Generator().manual_seed(seed_b))`` drawn on the CPU in fp32, so
  a batched call equals B single calls with the same seeds (``supports_per_sample_seed = True``).
* ``num_steps`` Euler steps (default ``config.num_inference_steps`` = 5) from t=0 (noise) to t=1 (data).
* ``action_mask`` fixes the chunk length T = ``action_mask.shape[1]``; its zero dims are zeroed.

Optional, NOT in the released checkpoints (``supports_prefix_actions = True``): ``prefix_actions``
(B, P, 32), normalized actions already committed for the first P <= T steps of the chunk, and
``prefix_length`` (int or B ints, each <= P; default P) to use only the first ``prefix_length[b]`` of
them. At every Euler step the prefix positions of the noisy chunk are overwritten by the straight path
``(1 - t) * noise + t * prefix`` (inpainting), and the returned chunk holds the prefix exactly there.

``config.release_interface = True`` (the ``--like-release`` checkpoint) keeps only what the released
checkpoints have: ``seed`` must be ONE int (a list, tuple, tensor or array raises TypeError, as seeding a
``torch.Generator`` with one does); its generator draws the noise of the whole batch at once,
``torch.randn((B, T, 32), generator=...)``, so for B = 1 the noise equals the per-sample one above.
``prefix_actions``/``prefix_length`` raise TypeError like any unexpected keyword argument, and
``supports_per_sample_seed``/``supports_prefix_actions`` are False. Loading with ``dtype=torch.bfloat16``
keeps the timestep embedder in fp32 (``_keep_in_fp32_modules_strict``), so only the release server's
final ``.to(torch.bfloat16)`` makes the whole model bf16; the embedder computes in its own dtype, so the
model runs either way.

Structure: the VLM runs once with ``use_cache=True``; DiT layer i attends over the cached keys/values of
VLM text layer ``L - N + i`` (N DiT layers) concatenated with its own tokens [state token(s), T noisy
action tokens], causally among its own tokens, with M-RoPE positions continuing after the prompt.
Timestep conditioning: sinusoidal embedding -> MLP -> added to the action tokens and adaLN modulation.
Attention of the DiT always uses ``torch.nn.functional.scaled_dot_product_attention``; the backbone
uses the ``attn_implementation`` given to ``from_pretrained``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import ModelOutput
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLModel,
    Qwen3VLTextRMSNorm,
    apply_rotary_pos_emb,
)

from .configuration_mibot import MiBoTConfig, MiBoTDiTConfig


@dataclass
class MiBoTActionOutput(ModelOutput):
    """``actions``: (B, T, action_dim) normalized action chunk."""

    actions: torch.FloatTensor | None = None


def _as_int_list(value: Any, batch_size: int, name: str) -> list[int]:
    """An int (broadcast) or B ints (list, tuple, 1-D tensor/array) as a list of B Python ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a sequence of ints, not bool")
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        values = [int(v) for v in value]
        if len(values) != batch_size:
            raise ValueError(f"{name} has {len(values)} entries for a batch of {batch_size}")
        return values
    try:
        return [int(value)] * batch_size
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(value).__name__}") from None


def _release_seed(value: Any) -> int:
    """The one int seed of the released forward; anything else is refused as torch's generator does."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    raise TypeError(
        f"seed must be one int (the released forward seeds one generator for the whole batch), got "
        f"{type(value).__name__}; send one request per forward to seed each sample"
    )


def sample_noise(seeds: list[int], horizon: int, dim: int) -> torch.Tensor:
    """Per-sample flow-matching noise, (B, T, dim) fp32 on the CPU, one generator per sample."""
    chunks = []
    for s in seeds:
        generator = torch.Generator(device="cpu").manual_seed(s)
        chunks.append(torch.randn((horizon, dim), generator=generator, dtype=torch.float32))
    return torch.stack(chunks)


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of flow times t in [0, 1] (scaled by 1000), (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MiBoTTimestepEmbedder(nn.Module):
    def __init__(self, config: MiBoTDiTConfig) -> None:
        super().__init__()
        self.frequency_embedding_size = config.frequency_embedding_size
        self.linear_1 = nn.Linear(config.frequency_embedding_size, config.hidden_size)
        self.linear_2 = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """(B,) flow times -> (B, hidden) in `dtype`, computed in the embedder's own dtype."""
        emb = timestep_embedding(t, self.frequency_embedding_size).to(self.linear_1.weight.dtype)
        return self.linear_2(F.silu(self.linear_1(emb))).to(dtype)


class MiBoTDiTAttention(nn.Module):
    """Attention over [cached VLM keys/values of one layer, own tokens], Qwen3-style q/k norms."""

    def __init__(self, config: MiBoTDiTConfig) -> None:
        super().__init__()
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.q_proj = nn.Linear(config.hidden_size, self.num_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(config.hidden_size, self.num_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, config.hidden_size, bias=False)
        self.q_norm = Qwen3VLTextRMSNorm(self.head_dim, eps=config.rms_norm_eps)
        self.k_norm = Qwen3VLTextRMSNorm(self.head_dim, eps=config.rms_norm_eps)

    def forward(
        self,
        hidden: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        cache_kv: tuple[torch.Tensor, torch.Tensor],
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        bsz, q_len, _ = hidden.shape
        shape = (bsz, q_len, -1, self.head_dim)
        q = self.q_norm(self.q_proj(hidden).view(shape)).transpose(1, 2)
        k = self.k_norm(self.k_proj(hidden).view(shape)).transpose(1, 2)
        v = self.v_proj(hidden).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        k = torch.cat([cache_kv[0].to(k.dtype), k], dim=2)
        v = torch.cat([cache_kv[1].to(v.dtype), v], dim=2)
        groups = self.num_heads // self.num_kv_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.o_proj(out.transpose(1, 2).reshape(bsz, q_len, -1))


class MiBoTDiTMLP(nn.Module):
    def __init__(self, config: MiBoTDiTConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MiBoTDiTLayer(nn.Module):
    """Pre-norm attention + MLP block with adaLN (shift, scale) modulation from the timestep."""

    def __init__(self, config: MiBoTDiTConfig) -> None:
        super().__init__()
        self.input_layernorm = Qwen3VLTextRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = Qwen3VLTextRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.self_attn = MiBoTDiTAttention(config)
        self.mlp = MiBoTDiTMLP(config)
        self.modulation = nn.Linear(config.hidden_size, 4 * config.hidden_size)

    def forward(
        self,
        hidden: torch.Tensor,
        temb: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        cache_kv: tuple[torch.Tensor, torch.Tensor],
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        shift1, scale1, shift2, scale2 = self.modulation(F.silu(temb))[:, None].chunk(4, dim=-1)
        normed = self.input_layernorm(hidden) * (1 + scale1) + shift1
        hidden = hidden + self.self_attn(normed, position_embeddings, cache_kv, attn_mask)
        normed = self.post_attention_layernorm(hidden) * (1 + scale2) + shift2
        return hidden + self.mlp(normed)


class MiBoTPreTrainedModel(PreTrainedModel):
    config_class = MiBoTConfig
    config: MiBoTConfig
    base_model_prefix = "mibot"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _no_split_modules = ["Qwen3VLTextDecoderLayer", "Qwen3VLVisionBlock", "MiBoTDiTLayer"]
    _skip_keys_device_placement = "past_key_values"
    _supports_flash_attn = True
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.dit_config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv3d)):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()
        elif isinstance(module, Qwen3VLTextRMSNorm) or type(module).__name__.endswith("RMSNorm"):
            module.weight.data.fill_(1.0)


class MiBoTForActionGeneration(MiBoTPreTrainedModel):
    """Vision-language-action model: prompt + images + state in, a normalized action chunk out."""

    supports_per_sample_seed = True
    supports_prefix_actions = True

    def __init__(self, config: MiBoTConfig) -> None:
        super().__init__(config)
        if getattr(config, "release_interface", False):
            self.supports_per_sample_seed = False
            self.supports_prefix_actions = False
            self._keep_in_fp32_modules_strict = ["t_embedder"]
        dit = config.dit_config
        text = config.vlm_config.text_config
        if dit.num_key_value_heads != text.num_key_value_heads or dit.head_dim != text.head_dim:
            raise ValueError("dit_config num_key_value_heads/head_dim must equal the VLM text model's")
        if dit.num_hidden_layers > text.num_hidden_layers:
            raise ValueError("the DiT cannot have more layers than the VLM text model")
        self.vlm = Qwen3VLModel._from_config(config.vlm_config)
        self.state_projector = nn.Linear(dit.state_dim, dit.hidden_size)
        self.action_in_proj = nn.Linear(dit.action_dim, dit.hidden_size)
        self.t_embedder = MiBoTTimestepEmbedder(dit)
        self.dit_layers = nn.ModuleList([MiBoTDiTLayer(dit) for _ in range(dit.num_hidden_layers)])
        self.final_norm = Qwen3VLTextRMSNorm(dit.hidden_size, eps=dit.rms_norm_eps)
        self.final_modulation = nn.Linear(dit.hidden_size, 2 * dit.hidden_size)
        self.action_out_proj = nn.Linear(dit.hidden_size, dit.action_dim)
        self.post_init()

    # -- flow matching -------------------------------------------------------------------------
    def dit_velocity(
        self,
        noisy_action: torch.Tensor,
        t: torch.Tensor,
        action_mask: torch.Tensor,
        state_embed: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        cache_kv: list[tuple[torch.Tensor, torch.Tensor]],
        attn_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Velocity field v(x_t, t): (B, T, A) -> (B, T, A)."""
        temb = self.t_embedder(t, noisy_action.dtype)
        actions = self.action_in_proj(noisy_action * action_mask) + temb[:, None]
        hidden = torch.cat([state_embed, actions], dim=1)
        for layer, kv in zip(self.dit_layers, cache_kv, strict=True):
            hidden = layer(hidden, temb, position_embeddings, kv, attn_mask)
        shift, scale = self.final_modulation(F.silu(temb))[:, None].chunk(2, dim=-1)
        hidden = self.final_norm(hidden[:, state_embed.shape[1] :]) * (1 + scale) + shift
        return self.action_out_proj(hidden)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        state: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        seed: int | list[int] | torch.Tensor | None = None,
        num_steps: int | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        return_dict: bool | None = None,
        **extra: Any,
    ) -> MiBoTActionOutput | tuple[torch.Tensor]:
        """The action chunk; `extra` takes `prefix_actions`/`prefix_length` unless `release_interface`."""
        release = bool(getattr(self.config, "release_interface", False))
        prefix_actions = None if release else extra.pop("prefix_actions", None)
        prefix_length = None if release else extra.pop("prefix_length", None)
        if extra:
            name = sorted(extra)[0]
            raise TypeError(f"{type(self).__name__}.forward() got an unexpected keyword argument {name!r}")
        if seed is None:
            raise ValueError("`seed` is required: it seeds the flow-matching noise (an int or B ints)")
        release_seed = _release_seed(seed) if release else None
        if input_ids is None or state is None or action_mask is None:
            raise ValueError("`input_ids`, `state` and `action_mask` are required")
        steps = int(num_steps if num_steps is not None else self.config.num_inference_steps)
        if steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {steps}")

        bsz = input_ids.shape[0]
        device, dtype = self.action_out_proj.weight.device, self.action_out_proj.weight.dtype
        if action_mask.dim() != 3:
            raise ValueError(f"action_mask must be (B, T, {self.config.dit_config.action_dim})")
        mask = action_mask.to(device=device, dtype=dtype).expand(bsz, -1, -1)
        horizon, action_dim = mask.shape[1], mask.shape[2]
        if state.dim() == 2:
            state = state[:, None]
        state = state.to(device=device, dtype=dtype)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        valid = attention_mask.to(device).bool()

        # VLM prefill once; position ids computed here so the DiT can continue them.
        position_ids, _ = self.vlm.get_rope_index(input_ids, image_grid_thw, video_grid_thw, attention_mask)
        vlm_out = self.vlm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            pixel_values=pixel_values,
            image_grid_thw=image_grid_thw,
            pixel_values_videos=pixel_values_videos,
            video_grid_thw=video_grid_thw,
            use_cache=True,
            return_dict=True,
        )
        cache = vlm_out.past_key_values
        n_vlm = self.config.vlm_config.text_config.num_hidden_layers
        first = n_vlm - len(self.dit_layers)
        keep = valid[:, None, :, None]
        cache_kv = [
            (cache.layers[i].keys.masked_fill(~keep, 0.0), cache.layers[i].values.masked_fill(~keep, 0.0))
            for i in range(first, n_vlm)
        ]

        state_embed = self.state_projector(state)
        q_len = state_embed.shape[1] + horizon
        start = position_ids.to(device).masked_fill(~valid[None], -1).amax(dim=(0, 2)) + 1  # (B,)
        dit_positions = start[None, :, None] + torch.arange(q_len, device=device)[None, None, :]
        position_embeddings = self.vlm.language_model.rotary_emb(state_embed, dit_positions.expand(3, -1, -1))
        own = torch.tril(torch.ones(q_len, q_len, dtype=torch.bool, device=device))
        attn_mask = torch.cat(
            [valid[:, None, :].expand(-1, q_len, -1), own[None].expand(bsz, -1, -1)], dim=-1
        )[:, None]

        if release_seed is not None:  # one generator for the whole batch
            generator = torch.Generator(device="cpu").manual_seed(release_seed)
            noise = torch.randn((bsz, horizon, action_dim), generator=generator, dtype=torch.float32)
        else:
            noise = sample_noise(_as_int_list(seed, bsz, "seed"), horizon, action_dim)
        noise = noise.to(device, dtype)
        prefix, prefix_mask = self._prefix(prefix_actions, prefix_length, bsz, horizon, action_dim, mask)

        x = noise
        dt = 1.0 / steps
        for k in range(steps):
            t = k * dt
            if prefix is not None:
                x = torch.where(prefix_mask, (1.0 - t) * noise + t * prefix, x)
            t_vec = torch.full((bsz,), t, device=device, dtype=torch.float32)
            v = self.dit_velocity(x, t_vec, mask, state_embed, position_embeddings, cache_kv, attn_mask)
            x = x + dt * v
        if prefix is not None:
            x = torch.where(prefix_mask, prefix, x)
        actions = x * mask
        if return_dict is False:
            return (actions,)
        return MiBoTActionOutput(actions=actions)

    @staticmethod
    def _prefix(
        prefix_actions: torch.Tensor | None,
        prefix_length: Any,
        bsz: int,
        horizon: int,
        action_dim: int,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Committed prefix padded to (B, T, A) and its (B, T, 1) position mask, or (None, None)."""
        if prefix_actions is None:
            if prefix_length is not None:
                raise ValueError("prefix_length given without prefix_actions")
            return None, None
        shape = tuple(prefix_actions.shape)
        if len(shape) != 3 or shape[0] != bsz or shape[2] != action_dim:
            raise ValueError(f"prefix_actions must be (B={bsz}, P, {action_dim}), got {shape}")
        plen = prefix_actions.shape[1]
        if plen > horizon:
            raise ValueError(f"prefix_actions has {plen} steps, more than the chunk's {horizon}")
        lengths = _as_int_list(plen if prefix_length is None else prefix_length, bsz, "prefix_length")
        if any(n < 0 or n > plen for n in lengths):
            raise ValueError(f"prefix_length entries must be in [0, {plen}], got {lengths}")
        full = torch.zeros(bsz, horizon, action_dim, device=mask.device, dtype=mask.dtype)
        full[:, :plen] = prefix_actions.to(device=mask.device, dtype=mask.dtype)
        limit = torch.tensor(lengths, device=mask.device)[:, None]
        positions = torch.arange(horizon, device=mask.device)[None]
        return full * mask, (positions < limit)[..., None]


__all__ = ["MiBoTActionOutput", "MiBoTForActionGeneration", "MiBoTPreTrainedModel"]
