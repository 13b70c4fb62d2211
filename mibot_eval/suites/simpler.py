"""SimplerEnv adapter (SAPIEN / ManiSkill2_real2sim), Xiaomi-Robotics-0 release protocol.

Episodes: the release's official lists (mibot_eval/data/simplerenv, see simpler_episodes); each
episode builds a fresh env from its own `env_kwargs` with SimplerEnv's `build_maniskill2_env` and
resets it with its `env_reset_options` and no seed, exactly as the release's client
(`eval_simplerenv/main.py`) does. A fresh ManiSkill2_real2sim env seeds its main RNG with 2022, so
whatever an env still draws at random (e.g. distractor placement) matches the release.

Per step: the env-space action (simpler_convert) is executed, the language instruction is re-read
(put-in-drawer switches from "open ... drawer" to "place ... into ... drawer" after 100 steps) and
every Observation carries the current one. An episode ends at its own `max_episode_steps`; success
follows the suite's `success_rule`:
  first_done  (release client: `while not truncated: ...; if done: break`, `return done`): the
              episode ends at the first step whose `done` is true, which is then the success;
  final_step  (the upstream SimplerEnv evaluator without a terminate signal): the episode always runs
              to its step limit and succeeds when `done` is true at that last step.

Lazy rendering: ManiSkill2_real2sim renders every camera inside `step()` (its `get_obs`). At steps
whose observation nobody reads, the adapter steps the unwrapped env with its observation mode
switched to "state_dict" (no render, no real-image overlay) and applies the wrappers' observation
transforms itself at the steps it does observe. Rendering does not feed back into the physics, so
states and rendered images match eager stepping (checked on the real simulator, see
docs/verification.md). `render="eager"` steps the wrapped env exactly as the release does.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.config import SuiteProtocol
from mibot_eval.errors import UserError
from mibot_eval.suites.base import check_render_mode, format_instruction, select_episodes
from mibot_eval.suites.simpler_assets import (
    describe_missing,
    missing_files,
    missing_siblings,
    overlay_path,
    static_requirements,
)
from mibot_eval.suites.simpler_convert import (
    GRIPPER_RULES,
    STATE_RULES,
    STATES,
    chunk_to_env_actions,
    conversion_backend,
    preprocess_image,
)
from mibot_eval.suites.simpler_episodes import DATASETS, SimplerEpisode, task_episodes
from mibot_eval.types import EpisodeSpec, Observation, StepResult

SUCCESS_RULES = ("first_done", "final_step")
UNOBSERVED_OBS_MODE = "state_dict"  # ManiSkill2 BaseEnv.get_obs: agent + extra, no camera render


class SimplerAdapter:
    """One SimplerEnv suite (Google Robot VM / VA or WidowX). A fresh env per episode."""

    def __init__(
        self,
        protocol: SuiteProtocol,
        render: str = "lazy",
        record_video: bool = False,
        backend: Any = None,
    ) -> None:
        self.protocol = protocol
        self.render_mode = check_render_mode(render)
        self.record_video = record_video
        self._read_params(protocol)
        self._tasks = task_episodes(self.dataset, [(t["name"], t["source"]) for t in self.tasks])
        self._check_counts()
        if backend is None:
            from mibot_eval.suites.simpler_backend import SimulatorBackend

            backend = SimulatorBackend()
        self.backend = backend
        self._env: Any = None
        self._episode: SimplerEpisode | None = None
        self._spec: EpisodeSpec | None = None
        self._last_rgb: np.ndarray | None = None
        self.renders = 0  # camera renders the adapter asked for (reset + observed steps)
        self._reset_episode_state()

    # -- configuration ----------------------------------------------------------------------------
    def _read_params(self, protocol: SuiteProtocol) -> None:
        src, params = protocol.source, protocol.params

        def need(key: str) -> Any:
            if key not in params:
                raise UserError(f"{src}: missing required field '{key}' (SimplerEnv suite)")
            return params[key]

        self.dataset = need("episode_list")
        if self.dataset not in DATASETS:
            raise UserError(f"{src}: episode_list must be one of {sorted(DATASETS)}, got {self.dataset!r}")
        tasks = need("tasks")
        if not isinstance(tasks, list) or not all(
            isinstance(t, dict) and {"name", "source", "episodes"} <= set(t) for t in tasks
        ):
            raise UserError(f"{src}: tasks must be a list of {{name, source, episodes}} mappings")
        self.tasks: list[dict[str, Any]] = tasks
        if len(tasks) != protocol.num_tasks:
            raise UserError(f"{src}: num_tasks is {protocol.num_tasks} but {len(tasks)} tasks are listed")
        self.camera = str(need("camera"))
        image = need("image")
        try:
            self.view = str(image["view"])
            self.width, self.height = int(image["width"]), int(image["height"])
            self.crop_ratio = float(image["crop_ratio"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{src}: image needs view, width, height and crop_ratio") from None
        self.state_rule = self._choice(need("state"), STATE_RULES, "state")
        self.gripper_rule = self._choice(need("gripper"), GRIPPER_RULES, "gripper")
        self.success_rule = self._choice(need("success_rule"), SUCCESS_RULES, "success_rule")
        self.instruction_format = params.get("instruction_format")

    def _choice(self, value: Any, allowed: Sequence[str], key: str) -> str:
        if value not in allowed:
            raise UserError(f"{self.protocol.source}: {key} must be one of {list(allowed)}, got {value!r}")
        return str(value)

    def _check_counts(self) -> None:
        for task, episodes in zip(self.tasks, self._tasks, strict=True):
            if len(episodes) != int(task["episodes"]):
                raise UserError(
                    f"{self.protocol.source}: task {task['name']} lists {task['episodes']} episodes, "
                    f"the official list has {len(episodes)} for '{task['source']}'"
                )
            unique = sum(1 for e in episodes if e.first_copy is None)
            if "unique" in task and unique != int(task["unique"]):
                raise UserError(
                    f"{self.protocol.source}: task {task['name']} lists {task['unique']} unique episodes, "
                    f"the official list has {unique}"
                )
        longest = max(len(e) for e in self._tasks)
        if self.protocol.episodes_per_task != longest:
            raise UserError(
                f"{self.protocol.source}: episodes_per_task must be the largest task's count ({longest}), "
                f"got {self.protocol.episodes_per_task}"
            )

    # -- episodes ---------------------------------------------------------------------------------
    def episodes(
        self, tasks: Sequence[int] | None = None, episodes_per_task: int | None = None
    ) -> list[EpisodeSpec]:
        """The official episodes in list order; `episodes_per_task` keeps the first N of each task."""
        task_ids, n = select_episodes(self.protocol, tasks, episodes_per_task)
        return [self._spec_of(ep) for t in task_ids for ep in self._tasks[t][:n]]

    def _spec_of(self, episode: SimplerEpisode) -> EpisodeSpec:
        return EpisodeSpec(
            suite=self.protocol.name,
            task_id=episode.task_id,
            task_name=episode.task_name,
            trial=episode.trial,
            seed=self.protocol.seed,
        )

    def episode_for(self, spec: EpisodeSpec) -> SimplerEpisode:
        if spec.suite != self.protocol.name or not 0 <= spec.task_id < len(self._tasks):
            raise UserError(f"{spec.key} is not an episode of {self.protocol.name}")
        episodes = self._tasks[spec.task_id]
        if not 0 <= spec.trial < len(episodes):
            raise UserError(f"{spec.key}: task {spec.task_name} has {len(episodes)} episodes")
        return episodes[spec.trial]

    def repeat_of(self, spec: EpisodeSpec) -> str | None:
        """Key of the first identical copy of this episode (None for a first copy)."""
        episode = self.episode_for(spec)
        if episode.first_copy is None:
            return None
        return self._spec_of(self._tasks[episode.task_id][episode.first_copy]).key

    def env_kwargs(self, episode: SimplerEpisode) -> dict[str, Any]:
        """The episode's env kwargs with the overlay image on the installed asset folder."""
        kwargs = copy.deepcopy(episode.env_kwargs)
        kwargs["max_episode_steps"] = int(kwargs["max_episode_steps"])  # as the release does
        if kwargs.get("rgb_overlay_path") is not None:
            kwargs["rgb_overlay_path"] = overlay_path(kwargs["rgb_overlay_path"], self.backend.asset_dir)
        return kwargs

    # -- env lifecycle ----------------------------------------------------------------------------
    def _reset_episode_state(self) -> None:
        self._steps = 0
        self._limit = 0
        self._first_done: int | None = None
        self._last_done = False
        self._instruction = ""
        self._instructions: list[list[Any]] = []

    def close(self) -> None:
        if self._env is not None:
            try:
                self._env.close()
            except Exception:  # noqa: BLE001 - a torn-down SAPIEN scene may complain on close
                pass
        self._env = None

    def _refuse(self, spec: EpisodeSpec, missing: list[Path]) -> UserError:
        return UserError(
            f"{spec.key} ({spec.task_name}) needs simulator assets that are missing: "
            f"{describe_missing(missing, self.backend.asset_dir.parent)}; SAPIEN would render them "
            "invisible, so the episode is refused (re-run `make setup-simpler` for the full asset data)"
        )

    def reset(self, spec: EpisodeSpec) -> Observation:
        episode = self.episode_for(spec)
        self.close()
        self._reset_episode_state()
        self._episode, self._spec = None, None
        kwargs = self.env_kwargs(episode)
        missing = missing_files(static_requirements(kwargs, self.backend.asset_dir))
        if missing:
            raise self._refuse(spec, missing)
        with self.backend.recorder() as recorder:
            self._env = self.backend.make_env(kwargs)
            obs, _info = self._env.reset(options=copy.deepcopy(episode.reset_options))
        loaded = list(recorder.paths)
        missing = missing_files(loaded)
        deleted = self.backend.deleted_files()
        if deleted:
            missing += [p for p in missing_siblings(loaded, deleted) if p not in missing]
        if missing:
            self.close()
            raise self._refuse(spec, missing)
        self._episode, self._spec = episode, spec
        self._limit = kwargs["max_episode_steps"]
        self._instruction = self._env.unwrapped.get_language_instruction()
        self._instructions = [[0, self._instruction]]
        self.renders += 1
        return self._observation(obs)

    # -- stepping ---------------------------------------------------------------------------------
    def step(self, action: np.ndarray, observe: bool) -> StepResult:
        if self._env is None:
            raise RuntimeError("step() before reset()")
        action = np.array(action, dtype=np.float64)  # holds keep the last gripper (the scheduler)
        # the episode's last step ends it whatever happens: nobody reads that observation
        observe = self.record_video or (observe and self._steps + 1 < self._limit)
        if self.render_mode == "eager":
            obs, _reward, done, _truncated, _info = self._env.step(action)
        else:
            obs, done = self._step_lazy(action, observe)
        self._steps += 1
        if observe:
            self.renders += 1
        done = bool(done)
        self._last_done = done
        if done and self._first_done is None:
            self._first_done = self._steps
        instruction = self._env.unwrapped.get_language_instruction()
        if instruction != self._instruction:
            self._instruction = instruction
            self._instructions.append([self._steps, instruction])
        at_limit = self._steps >= self._limit
        if self.success_rule == "first_done":
            success, finished = done, done or at_limit
        else:
            success, finished = done and at_limit, at_limit
        return StepResult(
            success=success,
            done=finished,
            observation=self._observation(obs) if observe else None,
        )

    def _step_lazy(self, action: np.ndarray, observe: bool) -> tuple[Any, bool]:
        raw = self._env.unwrapped
        if observe:
            obs, _reward, done, _truncated, _info = raw.step(action)
            return self._wrap_observation(obs), done
        mode = raw._obs_mode
        raw._obs_mode = UNOBSERVED_OBS_MODE
        try:
            _obs, _reward, done, _truncated, _info = raw.step(action)
        finally:
            raw._obs_mode = mode
        return None, done

    def _wrap_observation(self, obs: Any) -> Any:
        """What the env's wrapper chain (e.g. ManiSkill2's RGBDObservationWrapper) makes of `obs`."""
        chain = []
        wrapper = self._env
        while wrapper is not wrapper.unwrapped:
            chain.append(wrapper)
            wrapper = wrapper.env
        for wrapper in reversed(chain):  # innermost first, as nested step() calls apply them
            if callable(getattr(type(wrapper), "observation", None)):
                obs = wrapper.observation(obs)
        return obs

    # -- conversions ------------------------------------------------------------------------------
    def _observation(self, obs: dict[str, Any]) -> Observation:
        rgb = np.asarray(obs["image"][self.camera]["rgb"])
        self._last_rgb = rgb
        agent = obs["agent"]
        if "eef_pos" not in agent:
            raise UserError(
                "this ManiSkill2_real2sim has no obs['agent']['eef_pos'] (the end-effector state the "
                "release's fork adds); run `make setup-simpler` to install the pinned fork"
            )
        state = STATES[self.state_rule](np.asarray(agent["eef_pos"]))  # its own dtype, as the release
        image = preprocess_image(rgb, self.width, self.height, self.crop_ratio)
        instruction = format_instruction(self._instruction, self.instruction_format)
        return Observation(images={self.view: image}, state=state, instruction=instruction)  # float64

    def to_env_actions(self, chunk: np.ndarray) -> np.ndarray:
        return chunk_to_env_actions(chunk, self.gripper_rule)

    def video_frame(self) -> np.ndarray | None:
        """The camera frame of the last rendered step (the release's videos use the raw camera)."""
        return None if self._last_rgb is None else np.ascontiguousarray(self._last_rgb, dtype=np.uint8)

    def describe(self) -> dict[str, object]:
        """Simulator facts for the run manifest (installed commits, asset folder, render mode)."""
        facts: dict[str, object] = {
            "backend": getattr(self.backend, "name", type(self.backend).__name__),
            "episode_list": f"mibot_eval/data/simplerenv/{DATASETS[self.dataset]}",
            "render": self.render_mode,
            "success_rule": self.success_rule,
            "conversions": conversion_backend(),
        }
        describe = getattr(self.backend, "describe", None)
        if describe is not None:
            facts.update(describe())
        return facts

    def scene(self) -> dict[str, Any]:
        """The list entry the last reset built (for `mibot-eval inspect`)."""
        if self._episode is None:
            return {}
        return {"reference_index": self._episode.reference_index, "task_suite": self._episode.source,
                "env_kwargs": self._episode.env_kwargs, "reset_options": self._episode.reset_options}

    def episode_metrics(self) -> dict[str, object]:
        if self._episode is None or self._spec is None:
            return {}
        return {
            "reference_index": self._episode.reference_index,
            "repeat_of": self.repeat_of(self._spec),
            "task_suite": self._episode.source,
            "env_name": self._episode.env_kwargs.get("env_name"),
            "episode_max_steps": self._limit,
            "env_steps": self._steps,
            "first_done_step": self._first_done,
            "done_at_last_step": self._last_done,
            "success_rule": self.success_rule,
            "instructions": [list(item) for item in self._instructions],
        }
