"""The Policy protocol: a batch of observations in, one decoded action chunk per observation out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from mibot_eval.types import PolicyRequest


class Policy(Protocol):
    """Anything that maps observations to action chunks: the checkpoint in process, or a server.

    infer returns, per request, a (T, D) float array of decoded (un-normalized) actions in the model's
    action layout; the suite adapter turns it into env-space actions.
    """

    supports_prefix: bool

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies this policy in a run manifest."""
        ...
