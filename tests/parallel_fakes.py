"""Test-only doubles for parallel runs: a fast simulated suite whose episodes can crash, hang or raise.

`FakeSimAdapter` is registered under the adapter name "fakesim" by the tests (monkeypatching
`mibot_eval.suites.base.ADAPTERS`); the worker processes import it by module path from the parent's
registry, so nothing in production code knows about it. Faults are chosen per episode key in the
suite YAML (`faults: {"fake/0/1": crash_once}`), with a marker folder so that "*_once" faults fire
on the first attempt only (attempts run in different processes).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mibot_eval.config import SuiteProtocol
from mibot_eval.types import EpisodeSpec, Observation, StepResult

ADAPTER_ENTRY = ("tests.parallel_fakes", "FakeSimAdapter")


def write_suite(folder: Path, name: str = "fake", tasks: int = 2, episodes: int = 2,
                max_steps: int = 12, faults: dict[str, str] | None = None,
                step_sleep: float = 0.0, success_at: int | None = None,
                success_sign: float | None = None) -> Path:
    """A fakesim suite YAML (path) for load_suite."""
    markers = folder / f"{name}-markers"
    markers.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name, "benchmark": "fakesim", "adapter": "fakesim",
        "default_robot_type": "libero_all", "num_tasks": tasks, "episodes_per_task": episodes,
        "seed": 7, "max_steps": max_steps, "replan_steps": 5, "action_dim": 7,
        "hold_action": [0, 0, 0, 0, 0, 0, -1], "hold_gripper": "last", "control_hz": 20,
        "execution": "sync",
        "instruction_format": {"capitalize": "none", "append_period": True},
        "request_seed": {"images": {"Base View": "base"}, "state_shape": [32], "language": "instruction"},
        "faults": faults or {}, "marker_dir": str(markers), "step_sleep": step_sleep,
        "success_at": success_at, "success_sign": success_sign,
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class FakeSimAdapter:
    """Deterministic toy dynamics: state += action; images depend on (task, trial, step, state)."""

    def __init__(self, protocol: SuiteProtocol, render: str = "lazy", record_video: bool = False
                 ) -> None:
        self.protocol = protocol
        self.record_video = record_video
        self.params = protocol.params
        self.pid = os.getpid()
        self._state = np.zeros(8)
        self._spec: EpisodeSpec | None = None
        self._t = 0

    def episodes(self, tasks: Sequence[int] | None = None, episodes_per_task: int | None = None
                 ) -> list[EpisodeSpec]:
        task_ids = list(range(self.protocol.num_tasks)) if tasks is None else list(tasks)
        n = episodes_per_task or self.protocol.episodes_per_task
        return [EpisodeSpec(self.protocol.name, t, f"task{t}", i, self.protocol.seed, f"do task {t}")
                for t in task_ids for i in range(n)]

    def _fault(self, spec: EpisodeSpec, when: str) -> None:
        fault = (self.params.get("faults") or {}).get(spec.key)
        if not fault or not fault.startswith(when):
            return
        kind = fault.split(":")[-1]
        if kind.endswith("_once"):
            marker = Path(self.params["marker_dir"]) / spec.key.replace("/", "_")
            if marker.exists():
                return
            marker.write_text(str(os.getpid()))
            kind = kind[: -len("_once")]
        if kind == "crash":
            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "exit":
            os._exit(3)
        elif kind == "hang":
            time.sleep(3600)
        elif kind == "raise":
            raise RuntimeError(f"simulated simulator exception in {spec.key}")

    def reset(self, spec: EpisodeSpec) -> Observation:
        self._spec, self._t = spec, 0
        rng = np.random.default_rng([spec.task_id, spec.trial, 7])
        self._state = rng.normal(size=8)
        self._fault(spec, "reset")
        return self._observation()

    def _observation(self) -> Observation:
        assert self._spec is not None
        digest = hashlib.sha256(self._state.tobytes() + bytes([self._t % 256])).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        images = {"Base View": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8),
                  "Left-Wrist View": rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)}
        return Observation(images, self._state.astype(np.float32), self._spec.instruction)

    def step(self, action: np.ndarray, observe: bool) -> StepResult:
        assert self._spec is not None
        self._t += 1
        if self._t == 2:
            self._fault(self._spec, "step")
        if self.params.get("step_sleep"):
            time.sleep(float(self.params["step_sleep"]))
        self._state = self._state + 0.1 * np.asarray(action, dtype=np.float64)[:1].repeat(8)
        target = self.params.get("success_at")
        success = bool(target is not None and self._t >= target and self._spec.trial % 2 == 0)
        sign = self.params.get("success_sign")  # success also needs the policy to push this way
        if sign is not None:
            success = success and float(np.sign(np.asarray(action, dtype=np.float64)[0])) == float(sign)
        return StepResult(success=success, done=success,
                          observation=self._observation() if observe else None)

    def to_env_actions(self, chunk: np.ndarray) -> np.ndarray:
        return np.asarray(chunk)[:, : self.protocol.action_dim].astype(np.float64)

    def video_frame(self) -> np.ndarray | None:
        return self._observation().images["Base View"] if self._spec is not None else None

    def episode_metrics(self) -> dict[str, Any]:
        return {"worker_pid": self.pid}

    def describe(self) -> dict[str, Any]:
        return {"simulator": "fakesim"}

    def close(self) -> None:
        pass
