"""Shared test setup: one torch thread, headless MuJoCo, a private cache for the tiny checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault(
    "MIBOT_EVAL_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "test-cache")
)

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - the model extra is part of `make setup`
    pass

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The tiny random-weight checkpoint, generated once per cache."""
    from mibot_eval.tiny import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint()


@pytest.fixture(scope="session")
def tiny_release_like_checkpoint() -> Path:
    """The tiny checkpoint as limited as the released ones (one seed per forward, no prefix)."""
    from mibot_eval.tiny import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint(like_release=True)


@pytest.fixture()
def checkpoint_dir(tmp_path: Path) -> Path:
    """A local checkpoint folder (config.json only) for runs that inject their own policy."""
    folder = tmp_path / "my-ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "mibot"}')
    return folder


@pytest.fixture()
def fakesim(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register the fast fake simulator adapter (tests/parallel_fakes.py) as 'fakesim'."""
    from mibot_eval.suites import base
    from tests.parallel_fakes import ADAPTER_ENTRY

    monkeypatch.setitem(base.ADAPTERS, "fakesim", ADAPTER_ENTRY)
