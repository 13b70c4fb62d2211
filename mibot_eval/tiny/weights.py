"""Deterministic random weights: in place for the tiny model, streamed to bf16 shards for the large one.

The rule is the same for both: matrices N(0, gain^2 / fan_in), embeddings N(0, 1), norm weights 1,
biases 0. The tiny model draws every tensor from one generator in parameter order (its weights are
fixed by that order); the streamed writer seeds one generator per tensor from (seed, name), so each
shard is generated, written and freed on its own and memory stays at about one shard.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

INDEX_NAME = "model.safetensors.index.json"
SHARD_BYTES = 2 * 2**30
# Output-layer gains: velocity ~ N(0, 0.7^2) keeps decoded actions within ~3 std.
_GAINS = {"action_out_proj.weight": 0.7, "modulation.weight": 0.3}


def _std(name: str, shape: tuple[int, ...]) -> float:
    if "embed_tokens" in name or name.endswith("pos_embed.weight"):
        return 1.0
    gain = next((g for suffix, g in _GAINS.items() if name.endswith(suffix)), 1.0)
    return gain / math.sqrt(math.prod(shape[1:]))


def init_parameters(model: Any, seed: int) -> None:
    """Fill `model`'s parameters in place from one generator seeded with `seed` (the tiny model)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
                continue
            param.copy_(torch.randn(param.shape, generator=generator) * _std(name, tuple(param.shape)))


def _tensor(name: str, shape: tuple[int, ...], seed: int, dtype: Any) -> Any:
    import torch

    if len(shape) == 1:
        return torch.full(shape, 1.0 if name.endswith("weight") else 0.0, dtype=dtype)
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    values = torch.randn(shape, generator=generator)
    return values.mul_(_std(name, shape)).to(dtype)


def plan_shards(entries: Iterable[tuple[str, tuple[int, ...]]], itemsize: int,
                shard_bytes: int = SHARD_BYTES) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Tensors grouped in order into shards of at most `shard_bytes` (a larger tensor gets its own)."""
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in entries:
        nbytes = math.prod(shape) * itemsize
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return [s for s in shards if s]


def write_random_shards(model: Any, out: Path, seed: int, shard_bytes: int = SHARD_BYTES,
                        dtype: Any = None) -> int:
    """Write random weights for every tensor of `model`'s state dict (built on the meta device is fine)
    as `model-0000i-of-0000n.safetensors` in `dtype` (default bf16) plus the index; returns the bytes
    of tensor data written."""
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.bfloat16
    itemsize = torch.empty((), dtype=dtype).element_size()
    entries = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    shards = plan_shards(entries, itemsize, shard_bytes)
    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards, start=1):
        filename = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        tensors = {name: _tensor(name, shape, seed, dtype) for name, shape in shard}
        save_file(tensors, str(out / filename), metadata={"format": "pt"})
        total += sum(t.numel() * itemsize for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, filename))
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return total
