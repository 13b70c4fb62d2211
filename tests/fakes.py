"""Test doubles that follow the harness's Policy protocol exactly."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from mibot_eval.types import PolicyRequest


class ScriptedPolicy:
    """Deterministic chunks derived from the observation bytes; records every request."""

    supports_prefix = False

    def __init__(self, horizon: int = 10, dim: int = 32, scale: float = 0.5) -> None:
        self.horizon, self.dim, self.scale = horizon, dim, scale
        self.requests: list[PolicyRequest] = []

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        out = []
        for req in requests:
            self.requests.append(req)
            digest = hashlib.sha256(np.asarray(req.observation.state).tobytes()).digest()
            rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
            chunk = rng.uniform(-self.scale, self.scale, size=(self.horizon, self.dim))
            chunk[:, 6] = np.where(chunk[:, 6] > 0, 1.0, -1.0)
            out.append(chunk.astype(np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted", "horizon": self.horizon}


class RecordingPolicy(ScriptedPolicy):
    """Scripted chunks; keeps a copy (bytes) of every observation it was shown."""

    def __init__(self, horizon: int = 10, scale: float = 0.8) -> None:
        super().__init__(horizon=horizon, scale=scale)
        self.seen: list[tuple[dict[str, bytes], bytes, str]] = []
        self.seeds: list[int | None] = []

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        for r in requests:
            images = {k: v.tobytes() for k, v in r.observation.images.items()}
            self.seen.append((images, r.observation.state.tobytes(), r.observation.instruction))
            self.seeds.append(r.seed)
        return super().infer(requests)


class InterruptAt:
    """Mixin for a recording test policy: raise KeyboardInterrupt (as Ctrl-C would) at the n-th
    request."""

    requests: list[PolicyRequest]

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        if len(self.requests) + 1 == self.at:
            raise KeyboardInterrupt
        return super().infer(requests)  # type: ignore[misc]
