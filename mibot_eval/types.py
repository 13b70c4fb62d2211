"""Types at the seams: what adapters, policies, the scheduler and the results store exchange.

Numpy arrays only: no simulator objects past an adapter, no torch past a policy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run: which suite, task and trial, and everything needed to reproduce it."""

    suite: str
    task_id: int
    task_name: str
    trial: int
    seed: int
    instruction: str = ""

    @property
    def key(self) -> str:
        """Stable identity of the episode inside a run (used for resume and de-duplication)."""
        return f"{self.suite}/{self.task_id}/{self.trial}"


@dataclass
class Observation:
    """What the policy sees at one query.

    images: prompt view label (e.g. "Base View", "Left-Wrist View") -> HxWx3 uint8, in prompt order.
    state: the suite's raw proprioceptive state, float64 as the release's clients send it (the
    policy pads it to the model's width and casts it once to the model dtype).
    """

    images: dict[str, np.ndarray]
    state: np.ndarray
    instruction: str


@dataclass
class PolicyRequest:
    """One observation to act on, for one robot type.

    prefix: optional (P, action_dim) actions already committed for execution while this request is
    inferred (asynchronous execution); policies that cannot condition on it ignore it and say so.
    seed: the flow-matching noise seed, derived by the client exactly as the release's clients do
    (policy/seed.py, from the suite's `request_seed` rule); None: the policy derives one itself.
    """

    observation: Observation
    robot_type: str
    prefix: np.ndarray | None = None
    seed: int | None = None


@dataclass
class StepResult:
    """What one env step reports back to the scheduler.

    observation is None unless the caller asked for it (lazy rendering).
    reset_policy: the adapter switched to a new sub-goal (e.g. the next CALVIN subtask); any chunk
    in flight must be discarded and the policy re-queried.
    """

    success: bool
    done: bool
    observation: Observation | None = None
    reset_policy: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpisodeResult:
    """The outcome of one episode, as recorded in episodes.jsonl."""

    spec: EpisodeSpec
    success: bool
    steps: int
    status: str = "ok"  # "ok" | "error"
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
