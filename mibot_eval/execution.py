"""The chunk scheduler: the one place that decides which action runs at which control step.

sync (the official protocol): execute the first `replan_steps` (k) actions of a chunk, then
re-infer on the latest observation while the simulator waits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from mibot_eval.errors import UserError


@dataclass(frozen=True)
class ExecutionConfig:
    """How chunks are executed; recorded in every manifest and episode record."""

    mode: str = "sync"
    replan_steps: int = 10

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_execution_config(mode: str, replan_steps: int, **_: Any) -> ExecutionConfig:
    if mode != "sync":
        raise UserError(f"execution mode must be 'sync', got {mode!r}")
    return ExecutionConfig(mode=mode, replan_steps=replan_steps)


@dataclass
class SchedulerStats:
    queries: int = 0
    executed: int = 0
    idle_steps: int = 0
    latencies_s: list[float] = field(default_factory=list)

    def as_metrics(self) -> dict[str, Any]:
        return {
            "queries": self.queries,
            "executed_actions": self.executed,
            "idle_steps": self.idle_steps,
            "latencies_s": [round(x, 5) for x in self.latencies_s],
        }


class ChunkScheduler:
    """Step-by-step action source for one episode.

    Loop contract (see episode.run_episode):
        if query_due(): submit(env_chunk, latency_s)   # inferred on the current observation
        action, idle = next_action()
        observe = observation_needed()                   # will the next query read this step's obs?
    """

    def __init__(self, config: ExecutionConfig, hold_action: np.ndarray) -> None:
        self.config = config
        self.hold_action = np.asarray(hold_action, dtype=np.float64)
        self.stats = SchedulerStats()
        self._buffer: list[np.ndarray] = []

    def reset(self) -> None:
        """Drop any chunk in flight (new episode or new sub-goal)."""
        self._buffer = []

    def query_due(self) -> bool:
        return not self._buffer

    def prefix(self) -> np.ndarray | None:
        """Actions committed while the next request is inferred (none in sync mode)."""
        return None

    def submit(self, chunk: np.ndarray, latency_s: float) -> None:
        chunk = np.asarray(chunk, dtype=np.float64)
        self.stats.queries += 1
        self.stats.latencies_s.append(float(latency_s))
        self._buffer = list(chunk[: self.config.replan_steps])

    def next_action(self) -> tuple[np.ndarray, bool]:
        if not self._buffer:
            self.stats.idle_steps += 1
            return self.hold_action.copy(), True
        self.stats.executed += 1
        return self._buffer.pop(0), False

    def observation_needed(self) -> bool:
        return self.query_due()
