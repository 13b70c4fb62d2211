"""Write the tiny random-weight checkpoint that speaks the Xiaomi-Robotics-0 remote-code interface.

The folder holds config.json (`MiBoTConfig`, auto_map to the remote code), model.safetensors (about
1.3 MB, weights drawn from `seed`), the remote code files, a Qwen2 tokenizer trained offline, and
preprocessor/processor configs (Qwen2-VL image processor at 64x64, `action_config` statistics).
It is built in a temporary folder next to the target and renamed into place, so a killed run never
leaves a half checkpoint; `ensure_tiny_checkpoint` regenerates it when the generator code changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mibot_eval.tiny.stats import ACTION_DIM, action_config
from mibot_eval.tiny.tokenizer import patch_tokenizer_config, write_tokenizer

FORMAT = "tiny-checkpoint-v1"
MARKER = ".mibot-tiny.json"  # written last; hidden so checkpoint fingerprints skip it
REMOTE_CODE = Path(__file__).resolve().parent / "remote_code"
REMOTE_FILES = ("configuration_mibot.py", "modeling_mibot.py", "processing_mibot.py")
AUTO_MAP_MODEL = {
    "AutoConfig": "configuration_mibot.MiBoTConfig",
    "AutoModel": "modeling_mibot.MiBoTForActionGeneration",
}
AUTO_MAP_PROCESSOR = {"AutoProcessor": "processing_mibot.MiBotProcessor"}
PROCESSOR_CLASS = "MiBotProcessor"

# Image side: 8-pixel patches merged 2x2, at most 64x64 pixels -> 16 tokens for a 256x256 view.
PATCH_SIZE, MERGE_SIZE, TEMPORAL_PATCH = 8, 2, 2
MIN_PIXELS, MAX_PIXELS = 32 * 32, 64 * 64
# Output-layer gains of the random init: velocity ~ N(0, 0.7^2) keeps decoded actions within ~3 std.
_GAINS = {"action_out_proj.weight": 0.7, "modulation.weight": 0.3}


def tiny_checkpoint_path() -> Path:
    """Default location: `$MIBOT_EVAL_CACHE/tiny-checkpoint-v1` (cache default ~/.cache/mibot-eval)."""
    cache = os.environ.get("MIBOT_EVAL_CACHE") or str(Path.home() / ".cache" / "mibot-eval")
    return Path(cache).expanduser() / FORMAT


def code_digest() -> str:
    """Hash of everything that determines the checkpoint's content (generator + remote code)."""
    digest = hashlib.sha256(FORMAT.encode())
    here = Path(__file__).resolve().parent
    for path in [here / "checkpoint.py", here / "stats.py", here / "tokenizer.py"] + [
        REMOTE_CODE / name for name in REMOTE_FILES
    ]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def is_complete(directory: Path) -> bool:
    """True when `directory` holds a finished checkpoint made by the current generator code."""
    try:
        marker = json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("code") == code_digest() and (Path(directory) / "config.json").is_file()


def write_tiny_checkpoint(directory: str | Path, seed: int = 0) -> Path:
    """Write the checkpoint to `directory`, deterministic in `seed`.

    An existing tiny checkpoint there is replaced; any other non-empty folder raises FileExistsError.
    """
    target = Path(directory).expanduser().resolve()
    with _lock(target):
        _write_unlocked(target, seed)
    return target


def ensure_tiny_checkpoint(directory: Path | None = None) -> Path:
    """The checkpoint folder, generated (seed 0) on first use or when the generator code changed."""
    target = Path(directory or tiny_checkpoint_path()).expanduser().resolve()
    if is_complete(target):
        return target
    with _lock(target):
        if not is_complete(target):  # another process may have written it meanwhile
            _write_unlocked(target, seed=0)
    return target


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_unlocked(target: Path, seed: int) -> None:
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise FileExistsError(f"{target} exists and is not a tiny checkpoint; refusing to replace it")
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    for kind in ("tmp", "old"):  # left by a killed run; we hold the lock, so nobody else is writing
        for stale in target.parent.glob(f".{target.name}.{kind}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    try:
        _build(tmp, seed)
        _make_readable(tmp)
        if target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not target.exists():
            os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _make_readable(root: Path) -> None:
    """mkdtemp and safetensors create owner-only entries; give the usual 755/644 modes."""
    os.chmod(root, 0o755)
    for path in root.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _build(out: Path, seed: int) -> None:
    token_ids = write_tokenizer(out, out / ".scratch")
    shutil.rmtree(out / ".scratch")
    patch_tokenizer_config(out, {"processor_class": PROCESSOR_CLASS, "auto_map": AUTO_MAP_PROCESSOR})
    _write_json(out / "preprocessor_config.json", _preprocessor_config())
    processor_config = {"auto_map": AUTO_MAP_PROCESSOR, "processor_class": PROCESSOR_CLASS}
    _write_json(out / "processor_config.json", processor_config)
    for name in REMOTE_FILES:
        shutil.copyfile(REMOTE_CODE / name, out / name)
    _write_model(out, seed, token_ids)
    _write_json(out / MARKER, {"format": FORMAT, "seed": seed, "code": code_digest()})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _preprocessor_config() -> dict[str, Any]:
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH,
        merge_size=MERGE_SIZE,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    data = processor.to_dict()
    data.update(processor_class=PROCESSOR_CLASS, auto_map=AUTO_MAP_PROCESSOR, action_config=action_config())
    return data


def model_config(token_ids: dict[str, int]) -> dict[str, Any]:
    """Keyword arguments of `MiBoTConfig`: a tiny Qwen3-VL (2 text layers, 2 vision blocks) + 2 DiT layers."""
    vocab = 64 * math.ceil((max(token_ids.values()) + 1) / 64)
    text = {
        "vocab_size": vocab,
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
        "bos_token_id": None,
        "eos_token_id": token_ids["<|im_end|>"],
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH,
        "out_hidden_size": 64,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
    }
    vlm = {
        "text_config": text,
        "vision_config": vision,
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
        "tie_word_embeddings": False,
    }
    dit = {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "action_dim": ACTION_DIM,
        "state_dim": ACTION_DIM,
        "frequency_embedding_size": 32,
    }
    return {"vlm_config": vlm, "dit_config": dit, "num_inference_steps": 5}


def _write_model(out: Path, seed: int, token_ids: dict[str, int]) -> None:
    import torch

    from mibot_eval.tiny.remote_code.configuration_mibot import MiBoTConfig
    from mibot_eval.tiny.remote_code.modeling_mibot import MiBoTForActionGeneration

    config = MiBoTConfig(**model_config(token_ids))
    config.auto_map = dict(AUTO_MAP_MODEL)
    config._attn_implementation = "sdpa"
    model = MiBoTForActionGeneration(config).to(torch.float32)
    init_parameters(model, seed)
    model.save_pretrained(str(out), safe_serialization=True)
    data = json.loads((out / "config.json").read_text())
    data.pop("_attn_implementation_autoset", None)
    _write_json(out / "config.json", data)


def init_parameters(model: Any, seed: int) -> None:
    """Deterministic random weights: matrices N(0, gain^2/fan_in), embeddings N(0, 1), norms 1, biases 0."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 1:
                param.fill_(1.0 if name.endswith("weight") else 0.0)
                continue
            if "embed_tokens" in name or name.endswith("pos_embed.weight"):
                std = 1.0
            else:
                gain = next((g for suffix, g in _GAINS.items() if name.endswith(suffix)), 1.0)
                std = gain / math.sqrt(param[0].numel())
            param.copy_(torch.randn(param.shape, generator=generator) * std)
