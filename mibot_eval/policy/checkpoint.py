"""Find a checkpoint's folder (local path, tiny stand-in, or the local Hugging Face cache) and
fingerprint it, without downloading anything unless the hub is reachable and allowed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from mibot_eval.config import CheckpointInfo
from mibot_eval.errors import UserError

SMOKE_COMMAND = "make eval-libero CHECKPOINT=tiny EPISODES=1 TASKS=0"
_FINGERPRINT_SUFFIXES = (".json", ".py", ".txt", ".model", ".jinja")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_WEIGHT_SAMPLE = 1 << 20  # bytes read from each end of a weight file


@dataclass(frozen=True)
class ResolvedCheckpoint:
    info: CheckpointInfo
    path: Path
    source: str
    revision: str | None


def resolve_checkpoint_dir(info: CheckpointInfo) -> ResolvedCheckpoint:
    """The local folder holding `info`'s files; one clear error line when it cannot be had."""
    if info.tiny:
        from mibot_eval.tiny import ensure_tiny_checkpoint

        path = ensure_tiny_checkpoint(like_release=info.like_release)
        return ResolvedCheckpoint(info, path, f"tiny:{path}",
                                  "tiny-v1-like-release" if info.like_release else "tiny-v1")
    if info.path:
        return ResolvedCheckpoint(info, Path(info.path), info.path, None)
    if not info.repo:
        raise UserError(f"checkpoint '{info.name}' has neither a repo nor a path")
    path = _hub_snapshot(info.repo)
    revision = path.name if path.parent.name == "snapshots" else None
    return ResolvedCheckpoint(info, path, f"hf:{info.repo}", revision)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub reads it (1/true/yes/on), at call time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _hub_snapshot(repo: str) -> Path:
    """A hub checkpoint's snapshot folder: from the local Hugging Face cache, else downloaded unless
    offline; one clear UserError line saying which of those failed and what to do."""
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:
        raise UserError("huggingface_hub is not installed; run `make setup`") from None
    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    cache = constants.HF_HUB_CACHE
    if hub_offline():
        raise UserError(
            f"checkpoint {repo} is not in the local Hugging Face cache ({cache}) and HF_HUB_OFFLINE=1 "
            f"forbids downloading it; download it where there is internet (huggingface-cli download "
            f"{repo}), pass a local folder, or run the offline smoke test: {SMOKE_COMMAND}"
        ) from None
    try:
        return Path(snapshot_download(repo, etag_timeout=10))
    except GatedRepoError:
        raise UserError(f"checkpoint {repo} is gated on the hub: accept its terms on its hub page and "
                        "log in (huggingface-cli login)") from None
    except RepositoryNotFoundError:
        raise UserError(f"checkpoint {repo}: no such repo on the hub (or a private one: huggingface-cli "
                        "login); check the spelling, or pass a local folder") from None
    except Exception as exc:  # noqa: BLE001 - any other failure is the network's, as far as we can act
        reason = (str(exc).splitlines() or [""])[0][:120]
        raise UserError(
            f"checkpoint {repo} is not in the local Hugging Face cache ({cache}) and the hub is "
            f"unreachable ({type(exc).__name__}: {reason}); download it where there is internet "
            f"(huggingface-cli download {repo}) or run the offline smoke test: {SMOKE_COMMAND}"
        ) from None


def fingerprint(path: Path) -> str:
    """A content hash of a checkpoint folder: config/code files whole, weights by size + ends."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith(".") or "/." in rel:
            continue
        if file.suffix in _FINGERPRINT_SUFFIXES:
            digest.update(rel.encode())
            digest.update(file.read_bytes())
        elif file.suffix in _WEIGHT_SUFFIXES:
            size = file.stat().st_size
            digest.update(f"{rel}:{size}".encode())
            with file.open("rb") as stream:
                digest.update(stream.read(_WEIGHT_SAMPLE))
                stream.seek(max(0, size - _WEIGHT_SAMPLE))
                digest.update(stream.read(_WEIGHT_SAMPLE))
    return "sha256:" + digest.hexdigest()[:32]
