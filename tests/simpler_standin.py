"""A small stand-in for SimplerEnv (ManiSkill2_real2sim) that follows its interface, for fast tests.

What it mirrors (read from SimplerEnv / ManiSkill2_real2sim, not copied):
* `build_maniskill2_env(**env_kwargs)` returns a wrapper chain TimeLimit(RGBDObservationWrapper(env))
  with `.env` / `.unwrapped`; `reset(seed=None, options=...) -> (obs, info)`;
  `step(action) -> (obs, reward, done, truncated, info)` with done = info["success"] at that step and
  truncated once `max_episode_steps` steps ran;
* the unwrapped env renders its cameras inside `step()` / `reset()` when its `_obs_mode` is "image"
  (raw RGBA floats under obs["image"][camera]["Color"]); with "state_dict" it returns only
  obs["agent"] / obs["extra"]; the RGBD wrapper's `observation()` turns Color into uint8 "rgb";
* obs["agent"]["eef_pos"] = [x, y, z, qw, qx, qy, qz, gripper opening] (the release's fork);
* `get_language_instruction()`, `is_final_subtask()`, `advance_to_next_subtask()`; the
  PlaceIntoClosed*Drawer envs force the second subtask once 100 steps have run;
* assets are loaded through a loader that, like SAPIEN, logs a missing file and carries on.
The physics is a toy: the end effector moves by the action's xyz, the gripper follows its command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.suites.simpler_assets import LoadRecorder

CAMERAS = {"google_robot_static": ("overhead_camera", 512, 640), "widowx": ("3rd_view_camera", 480, 640)}
INSTRUCTIONS = {
    "GraspSingleOpenedCokeCan": "pick coke can",
    "MoveNear": "move blue plastic bottle near pepsi can",
    "OpenTopDrawer": "open top drawer",
    "OpenMiddleDrawer": "open middle drawer",
    "OpenBottomDrawer": "open bottom drawer",
    "CloseTopDrawer": "close top drawer",
    "CloseMiddleDrawer": "close middle drawer",
    "CloseBottomDrawer": "close bottom drawer",
    "PutCarrotOnPlate": "put carrot on plate",
    "PutEggplantInBasket": "put eggplant into yellow basket",
    "PutSpoonOnTableCloth": "put the spoon on the towel",
    "StackGreenCubeOnYellowCube": "stack the green block on the yellow block",
}
FORCE_ADVANCE_STEPS = 100  # ManiSkill2_real2sim PlaceObjectInClosedDrawerInSceneEnv default

DoneFn = Callable[["StandinSimplerEnv"], bool]


class StandinLoader:
    """Loads "assets" like SAPIEN: a missing file is logged, not raised."""

    errors: list[str] = []

    def load_file(self, filename: str) -> bool:
        if not Path(filename).is_file():
            StandinLoader.errors.append(f"File not found: {filename}")
            return False
        return True


class StandinSimplerEnv:
    """The unwrapped env."""

    def __init__(self, env_name: str, robot: str, asset_dir: Path, done_fn: DoneFn | None = None,
                 scene_name: str | None = None, rgb_overlay_path: str | None = None,
                 **kwargs: Any) -> None:
        self.env_name = env_name
        self.robot_uid = robot
        self.kwargs = kwargs
        self._obs_mode = "image"  # ManiSkill2's make(): obs_mode "rgbd" -> "image" + RGBD wrapper
        self.camera, self.height, self.width = CAMERAS["widowx" if "widowx" in robot else robot]
        self.done_fn = done_fn or (lambda env: False)
        self.renders = 0
        self.reset_calls: list[dict[str, Any]] = []
        self.closed = False
        if rgb_overlay_path is not None and not Path(rgb_overlay_path).is_file():
            raise FileNotFoundError(f"rgb_overlay_path {rgb_overlay_path} is not found.")
        loader = StandinLoader()
        if scene_name is not None and "dummy" not in scene_name:
            loader.load_file(str(Path(asset_dir) / "hab2_bench_assets" / "stages" / f"{scene_name}.glb"))
        self.model_dir = Path(asset_dir) / "custom" / "models" / env_name.split("-")[0]
        loader.load_file(str(self.model_dir / "textured.obj"))
        self._elapsed = 0
        self.subtask = 0
        self.eef = np.zeros(8)

    @property
    def unwrapped(self) -> StandinSimplerEnv:
        return self

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        options = options or {}
        self.reset_calls.append({"seed": seed, "options": options})
        xy = options.get("robot_init_options", {}).get("init_xy", [0.0, 0.0])
        self.eef = np.array([0.3 + xy[0], 0.1 + xy[1], 0.2, 0.5, 0.5, 0.5, 0.5, 1.0])
        self._elapsed = 0
        self.subtask = 0
        return self.get_obs(), {}

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        if self.env_name.startswith("PlaceIntoClosed") and self._elapsed >= FORCE_ADVANCE_STEPS:
            self.advance_to_next_subtask()
        action = np.asarray(action, dtype=np.float64)
        self.eef[:3] += 0.01 * action[:3]
        self.eef[7] = 1.0 if action[6] > 0 else 0.0
        self._elapsed += 1
        obs = self.get_obs()
        success = bool(self.done_fn(self))
        info = {"elapsed_steps": self._elapsed, "success": success}
        return obs, float(success), success, False, info

    def get_obs(self) -> dict[str, Any]:
        obs: dict[str, Any] = {"agent": {"eef_pos": self.eef.copy()}, "extra": {}}
        if self._obs_mode == "image":
            self.renders += 1
            obs["image"] = {self.camera: {"Color": self._render()}}
        elif self._obs_mode != "state_dict":
            raise NotImplementedError(self._obs_mode)
        return obs

    def _render(self) -> np.ndarray:
        """RGBA floats in [0, 1] that depend on the state (so a stale frame would show)."""
        if not hasattr(self, "_grid"):
            ys, xs = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
            self._grid = (xs / self.width, ys / self.height)
        xs, ys = self._grid
        color = np.empty((self.height, self.width, 4), dtype=np.float32)
        color[..., 0] = (xs + 0.05 * self._elapsed) % 1.0
        color[..., 1] = (ys + float(self.eef[0])) % 1.0
        color[..., 2] = float(self.eef[7]) * 0.5 + 0.25
        color[..., 3] = 1.0
        return color

    @property
    def elapsed_steps(self) -> int:
        return self._elapsed

    def get_language_instruction(self) -> str:
        if self.env_name.startswith("PlaceIntoClosed"):
            return "open top drawer" if self.subtask == 0 else "place apple into top drawer"
        key = next((k for k in INSTRUCTIONS if self.env_name.startswith(k)), None)
        return INSTRUCTIONS[key] if key else self.env_name

    def is_final_subtask(self) -> bool:
        return not self.env_name.startswith("PlaceIntoClosed") or self.subtask == 1

    def advance_to_next_subtask(self) -> None:
        self.subtask = 1

    def close(self) -> None:
        self.closed = True


class StandinWrapper:
    """Base of the stand-in wrappers: delegates to the wrapped env."""

    def __init__(self, env: Any) -> None:
        self.env = env

    @property
    def unwrapped(self) -> StandinSimplerEnv:
        return self.env.unwrapped

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        return self.env.reset(**kwargs)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        return self.env.step(action)

    def close(self) -> None:
        self.env.close()


class StandinRGBDWrapper(StandinWrapper):
    """Color (RGBA float) -> rgb (uint8), as ManiSkill2's RGBD observation wrapper does."""

    def observation(self, obs: dict[str, Any]) -> dict[str, Any]:
        for camera, images in obs.get("image", {}).items():
            color = images.pop("Color")
            images["rgb"] = np.clip(color[..., :3] * 255, 0, 255).astype(np.uint8)
            obs["image"][camera] = images
        return obs

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kwargs)
        return self.observation(obs), info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, done, truncated, info = self.env.step(action)
        return self.observation(obs), reward, done, truncated, info


class StandinTimeLimit(StandinWrapper):
    def __init__(self, env: Any, max_episode_steps: int) -> None:
        super().__init__(env)
        self.max_episode_steps = max_episode_steps
        self._elapsed = 0

    def reset(self, **kwargs: Any) -> tuple[dict, dict]:
        self._elapsed = 0
        return self.env.reset(**kwargs)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        obs, reward, done, truncated, info = self.env.step(action)
        self._elapsed += 1
        return obs, reward, done, truncated or self._elapsed >= self.max_episode_steps, info


class StandinBackend:
    """What SimplerAdapter needs from a simulator backend, over the stand-in env."""

    name = "standin"

    def __init__(self, asset_dir: Path, done_fn: DoneFn | None = None,
                 deleted: set[Path] | None = None) -> None:
        self.asset_dir = Path(asset_dir)
        self.done_fn = done_fn
        self.deleted = deleted
        self.built: list[dict[str, Any]] = []
        self.envs: list[StandinTimeLimit] = []

    def make_env(self, env_kwargs: dict[str, Any]) -> StandinTimeLimit:
        self.built.append(dict(env_kwargs))
        kwargs = dict(env_kwargs)
        max_steps = int(kwargs.pop("max_episode_steps"))
        raw = StandinSimplerEnv(asset_dir=self.asset_dir, done_fn=self.done_fn, **kwargs)
        env = StandinTimeLimit(StandinRGBDWrapper(raw), max_steps)
        self.envs.append(env)
        return env

    def recorder(self) -> LoadRecorder:
        return LoadRecorder([(StandinLoader, "load_file")])

    def deleted_files(self) -> set[Path] | None:
        return self.deleted


def make_assets(root: Path, episodes: list[Any], skip: tuple[str, ...] = ()) -> Path:
    """An asset folder with every file the stand-in loads for `episodes` (minus names in `skip`)."""
    asset_dir = Path(root) / "ManiSkill2_real2sim" / "data"
    files: set[Path] = set()
    for episode in episodes:
        kwargs = episode.env_kwargs
        files.add(Path("custom") / "models" / kwargs["env_name"].split("-")[0] / "textured.obj")
        scene = kwargs.get("scene_name")
        if scene and "dummy" not in scene:
            files.add(Path("hab2_bench_assets") / "stages" / f"{scene}.glb")
        overlay = kwargs.get("rgb_overlay_path")
        if overlay:
            files.add(Path("real_inpainting") / Path(overlay).name)
    for rel in sorted(files):
        if any(s in str(rel) for s in skip):
            continue
        path = asset_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("stand-in asset\n")
    return asset_dir
