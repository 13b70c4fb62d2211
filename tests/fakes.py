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
