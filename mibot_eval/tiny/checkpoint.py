"""Write the tiny random-weight checkpoint that speaks the Xiaomi-Robotics-0 remote-code interface.

The folder holds config.json (`MiBoTConfig`, auto_map to the remote code), model.safetensors (about
1.3 MB, weights drawn from `seed`), the remote code files, a Qwen2 tokenizer trained offline, and
preprocessor/processor configs (Qwen2-VL image processor at 64x64, `action_config` statistics).
It is built in a temporary folder next to the target and renamed into place, so a killed run never
leaves a half checkpoint; `ensure_tiny_checkpoint` regenerates it when the generator code changed.

Two variants share that code:

* `like_release=True`: the same weights, tokenizer and processor, but the model is as limited as the
  released checkpoints (one int seed per forward, no prefix actions, a module that bf16 loading leaves
  in fp32; `MiBoTConfig.release_interface`). Cached beside the tiny one (`tiny_checkpoint_path`).
* `size="release"`: random weights at the release's dimensions (4.72B parameters, `sizes.py`), written
  as bf16 safetensors shards generated one at a time (about 9.4 GB; memory stays near one 2 GiB
  shard); `weights=False` writes everything but the weights. For GPU latency/memory measurements only:
  it is never generated implicitly, and never in CI.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mibot_eval.tiny.sizes import IMAGE_SETTINGS, check_size, model_config
from mibot_eval.tiny.stats import action_config
from mibot_eval.tiny.tokenizer import patch_tokenizer_config, write_tokenizer
from mibot_eval.tiny.weights import init_parameters, write_random_shards

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

LIKE_RELEASE_SUFFIX = "-like-release"


@dataclass(frozen=True)
class Variant:
    """What a generated folder holds: its dimensions, its interface and whether it has weights."""

    size: str = "tiny"
    like_release: bool = False
    weights: bool = True


def tiny_checkpoint_path(like_release: bool = False) -> Path:
    """Default location: `$MIBOT_EVAL_CACHE/tiny-checkpoint-v1` (cache default ~/.cache/mibot-eval);
    the like-release variant lives beside it in `tiny-checkpoint-v1-like-release`."""
    cache = os.environ.get("MIBOT_EVAL_CACHE") or str(Path.home() / ".cache" / "mibot-eval")
    return Path(cache).expanduser() / (FORMAT + (LIKE_RELEASE_SUFFIX if like_release else ""))


def code_digest() -> str:
    """Hash of everything that determines the checkpoint's content (generator + remote code)."""
    digest = hashlib.sha256(FORMAT.encode())
    here = Path(__file__).resolve().parent
    generator = ("checkpoint.py", "sizes.py", "stats.py", "tokenizer.py", "weights.py")
    for path in [here / name for name in generator] + [REMOTE_CODE / name for name in REMOTE_FILES]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def is_complete(
    directory: Path, like_release: bool = False, size: str = "tiny", weights: bool = True
) -> bool:
    """True when `directory` holds a finished checkpoint of that variant made by the current code."""
    try:
        marker = json.loads((Path(directory) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    wanted = asdict(Variant(size, like_release, weights))
    return (
        marker.get("code") == code_digest()
        and {key: marker.get(key) for key in wanted} == wanted
        and (Path(directory) / "config.json").is_file()
    )


def write_tiny_checkpoint(
    directory: str | Path,
    seed: int = 0,
    *,
    like_release: bool = False,
    size: str = "tiny",
    weights: bool = True,
) -> Path:
    """Write the checkpoint to `directory`, deterministic in `seed` (module docstring: the variants).

    An existing generated checkpoint there is replaced; any other non-empty folder raises FileExistsError.
    """
    variant = Variant(check_size(size), bool(like_release), bool(weights))
    target = Path(directory).expanduser().resolve()
    with _lock(target):
        _write_unlocked(target, seed, variant)
    return target


def ensure_tiny_checkpoint(directory: Path | None = None, like_release: bool = False) -> Path:
    """The tiny (or like-release) checkpoint folder, generated (seed 0) on first use or when the
    generator code changed; default folder `tiny_checkpoint_path(like_release)`."""
    target = Path(directory or tiny_checkpoint_path(like_release)).expanduser().resolve()
    if is_complete(target, like_release):
        return target
    with _lock(target):
        if not is_complete(target, like_release):  # another process may have written it meanwhile
            _write_unlocked(target, 0, Variant(like_release=like_release))
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


def _write_unlocked(target: Path, seed: int, variant: Variant) -> None:
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
        _build(tmp, seed, variant)
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


def _build(out: Path, seed: int, variant: Variant) -> None:
    token_ids = write_tokenizer(out, out / ".scratch")
    shutil.rmtree(out / ".scratch")
    patch_tokenizer_config(out, {"processor_class": PROCESSOR_CLASS, "auto_map": AUTO_MAP_PROCESSOR})
    _write_json(out / "preprocessor_config.json", _preprocessor_config(variant.size))
    processor_config = {"auto_map": AUTO_MAP_PROCESSOR, "processor_class": PROCESSOR_CLASS}
    _write_json(out / "processor_config.json", processor_config)
    for name in REMOTE_FILES:
        shutil.copyfile(REMOTE_CODE / name, out / name)
    _write_model(out, seed, token_ids, variant)
    _write_json(out / MARKER, {"format": FORMAT, "seed": seed, "code": code_digest(), **asdict(variant)})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _preprocessor_config(size: str = "tiny") -> dict[str, Any]:
    from transformers import Qwen2VLImageProcessor

    patch, merge, temporal, min_pixels, max_pixels = IMAGE_SETTINGS[size]
    processor = Qwen2VLImageProcessor(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=patch,
        temporal_patch_size=temporal,
        merge_size=merge,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    data = processor.to_dict()
    data.update(processor_class=PROCESSOR_CLASS, auto_map=AUTO_MAP_PROCESSOR, action_config=action_config())
    return data


def _write_model(out: Path, seed: int, token_ids: dict[str, int], variant: Variant) -> None:
    import torch

    from mibot_eval.tiny.remote_code.configuration_mibot import MiBoTConfig
    from mibot_eval.tiny.remote_code.modeling_mibot import MiBoTForActionGeneration

    config = MiBoTConfig(**model_config(token_ids, variant.size, variant.like_release))
    config.auto_map = dict(AUTO_MAP_MODEL)
    config._attn_implementation = "sdpa"
    config.architectures = [MiBoTForActionGeneration.__name__]
    if variant.size == "tiny":
        model = MiBoTForActionGeneration(config).to(torch.float32)
        init_parameters(model, seed)
        if variant.weights:
            model.save_pretrained(str(out), safe_serialization=True)
        else:
            model.config.save_pretrained(str(out))
    else:  # large: built on the meta device, weights streamed shard by shard in bf16
        with torch.device("meta"):
            model = MiBoTForActionGeneration(config)
        model.config.dtype = torch.bfloat16
        model.config.save_pretrained(str(out))
        if variant.weights:
            write_random_shards(model, out, seed)
    data = json.loads((out / "config.json").read_text())
    data.pop("_attn_implementation_autoset", None)
    _write_json(out / "config.json", data)
