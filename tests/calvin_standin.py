"""A small stand-in for calvin_env's PlayTableSimEnv and task oracle, for tests without PyBullet.

It follows calvin_env's interface (commit 797142c) exactly where the adapter touches it:
  env.reset(robot_obs=..., scene_obs=...) -> obs           env.step(action) -> (obs, 0, False, info)
  env.get_obs() -> {"rgb_obs": {"rgb_static", "rgb_gripper"}, "depth_obs", "robot_obs", "scene_obs"}
  env.get_info() -> {"robot_info": {...}, "scene_info": {...}}
  env.robot.apply_action(a), env.p.stepSimulation(physicsClientId=env.cid), env.action_repeat,
  env.scene.step(), env.cameras, env.close()
  oracle.get_task_info_for_set(start_info, end_info, task_filter) -> set of solved task names
and its step is built from those parts in upstream's order, so a lazy step (parts without get_obs)
can be checked against it. The "physics" is a toy: the tool centre point moves toward a target that
relative actions shift; `progress` integrates the x component of every applied action. The oracle
solves a subtask once progress since the subtask's start reaches that subtask's threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

ROBOT_OBS_DIMS = 15  # tcp pos (3), tcp euler (3), gripper width, 7 joints, gripper action
SCENE_OBS_DIMS = 24


class StandInPhysics:
    """Plays pybullet's role: counts simulation steps and moves the robot toward its target."""

    def __init__(self, world: StandInWorld) -> None:
        self.world = world
        self.sim_steps = 0

    def stepSimulation(self, physicsClientId: int = 0) -> None:  # noqa: N802 - pybullet's name
        assert physicsClientId == self.world.cid
        self.sim_steps += 1
        w = self.world
        w.tcp += 0.25 * (w.target - w.tcp)
        goal = 0.08 if w.gripper_action == 1 else 0.0
        w.width += 0.25 * (goal - w.width)


class StandInWorld:
    def __init__(self) -> None:
        self.cid = 7
        self.tcp = np.zeros(6)
        self.target = np.zeros(6)
        self.width = 0.08
        self.joints = np.zeros(7)
        self.gripper_action: float = 1
        self.scene = np.zeros(SCENE_OBS_DIMS)
        self.progress = 0.0
        self.last_x = 0.0


class StandInRobot:
    def __init__(self, world: StandInWorld) -> None:
        self.world = world
        self.applied: list[np.ndarray] = []

    def reset(self, robot_obs: np.ndarray | None) -> None:
        w = self.world
        obs = np.zeros(ROBOT_OBS_DIMS) if robot_obs is None else np.asarray(robot_obs, dtype=np.float64)
        assert obs.shape == (ROBOT_OBS_DIMS,)
        w.tcp, w.width, w.joints = obs[:6].copy(), float(obs[6]), obs[7:14].copy()
        w.target = w.tcp.copy()
        w.gripper_action = obs[14]

    def apply_action(self, action: np.ndarray) -> None:
        """calvin_env Robot.apply_action for a 7-d relative action (asserts the gripper is +/-1)."""
        action = np.copy(action)
        assert action.shape == (7,)
        self.applied.append(action)
        w = self.world
        w.target[:3] += action[:3] * 0.02
        w.target[3:6] += action[3:6] * 0.05
        w.gripper_action = action[6]
        assert w.gripper_action in (-1, 1)
        w.last_x = float(action[0])

    def get_observation(self) -> tuple[np.ndarray, dict[str, Any]]:
        w = self.world
        state = np.array([*w.tcp, w.width, *w.joints, w.gripper_action])
        return state, {"tcp_pos": w.tcp[:3].copy(), "gripper_action": w.gripper_action, "uid": 1}


class StandInScene:
    def __init__(self, world: StandInWorld) -> None:
        self.world = world

    def reset(self, scene_obs: np.ndarray | None) -> None:
        obs = np.zeros(SCENE_OBS_DIMS) if scene_obs is None else np.asarray(scene_obs, dtype=np.float64)
        assert obs.shape == (SCENE_OBS_DIMS,)
        self.world.scene = obs.copy()
        self.world.progress = 0.0

    def step(self) -> None:
        self.world.progress += self.world.last_x

    def get_obs(self) -> np.ndarray:
        return self.world.scene.copy()

    def get_info(self) -> dict[str, Any]:
        return {"progress": self.world.progress, "scene_obs": self.world.scene.copy()}


class StandInCamera:
    def __init__(self, name: str, size: int, world: StandInWorld, env: StandInEnv) -> None:
        self.name, self.size, self.world, self.env = name, size, world, env

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """A picture that changes with the robot state (so stale or missing renders show)."""
        self.env.renders += 1
        w = self.world
        y, x = np.mgrid[0 : self.size, 0 : self.size]
        base = int(abs(w.tcp[0]) * 1e4 + abs(w.tcp[1]) * 3e3 + w.width * 1e3) % 256
        rgb = np.stack([(x + base) % 256, (y + 2 * base) % 256, (x + y + 3 * base) % 256], axis=-1)
        return rgb.astype(np.uint8), np.zeros((self.size, self.size))


class StandInEnv:
    """PlayTableSimEnv's interface with toy dynamics (8 physics substeps per control step)."""

    def __init__(self, static_size: int = 200, gripper_size: int = 84) -> None:
        self.world = StandInWorld()
        self.cid = self.world.cid
        self.p = StandInPhysics(self.world)
        self.robot = StandInRobot(self.world)
        self.scene = StandInScene(self.world)
        self.action_repeat = 8
        self.use_vr = False
        self.renders = 0
        self.steps = 0
        self.resets: list[tuple[np.ndarray, np.ndarray]] = []
        self.closed = False
        self.cameras = [
            StandInCamera("static", static_size, self.world, self),
            StandInCamera("gripper", gripper_size, self.world, self),
        ]

    def reset(self, robot_obs: np.ndarray | None = None, scene_obs: np.ndarray | None = None) -> dict:
        self.resets.append((np.array(robot_obs), np.array(scene_obs)))
        self.scene.reset(scene_obs)
        self.robot.reset(robot_obs)
        self.p.stepSimulation(physicsClientId=self.cid)
        return self.get_obs()

    def get_camera_obs(self) -> tuple[dict, dict]:
        rgb, depth = {}, {}
        for cam in self.cameras:
            rgb[f"rgb_{cam.name}"], depth[f"depth_{cam.name}"] = cam.render()
        return rgb, depth

    def get_obs(self) -> dict[str, Any]:
        rgb, depth = self.get_camera_obs()
        robot_obs, _ = self.robot.get_observation()
        return {"rgb_obs": rgb, "depth_obs": depth, "robot_obs": robot_obs, "scene_obs": self.scene.get_obs()}

    def get_info(self) -> dict[str, Any]:
        _, robot_info = self.robot.get_observation()
        return {"robot_info": robot_info, "scene_info": self.scene.get_info()}

    def step(self, action: np.ndarray) -> tuple[dict, int, bool, dict]:
        self.steps += 1
        self.robot.apply_action(action)
        for _ in range(self.action_repeat):
            self.p.stepSimulation(physicsClientId=self.cid)
        self.scene.step()
        obs = self.get_obs()
        info = self.get_info()
        return obs, 0, False, info

    def close(self) -> None:
        self.closed = True


class StandInTasks:
    """calvin_env.envs.tasks.Tasks' interface: a subtask is solved once progress since the subtask's
    start info reaches its threshold (subtasks without a threshold never succeed)."""

    def __init__(self, thresholds: Mapping[str, float]) -> None:
        self.thresholds = dict(thresholds)
        self.calls = 0

    def get_task_info_for_set(self, start_info: dict, end_info: dict, task_filter: set) -> set:
        self.calls += 1
        done = end_info["scene_info"]["progress"] - start_info["scene_info"]["progress"]
        return {t for t in task_filter if t in self.thresholds and done >= self.thresholds[t] - 1e-9}


class EnvFactory:
    """Builds stand-in envs and keeps them (the adapter builds one per sequence)."""

    label = "stand-in env"

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.built: list[StandInEnv] = []

    def __call__(self) -> StandInEnv:
        env = StandInEnv(**self.kwargs)
        self.built.append(env)
        return env


class ChunkPolicy:
    """Harness Policy: every query returns the same decoded chunk (x speed, gripper); keeps requests."""

    supports_prefix = False

    def __init__(self, x: float = 1.0, gripper: float = 0.7, horizon: int = 10, dim: int = 32) -> None:
        self.chunk = np.zeros((horizon, dim), dtype=np.float32)
        self.chunk[:, 0] = x
        self.chunk[:, 6] = gripper
        self.requests: list[Any] = []

    def infer(self, requests: list[Any]) -> list[np.ndarray]:
        self.requests.extend(requests)
        return [self.chunk.copy() for _ in requests]

    def describe(self) -> dict[str, Any]:
        return {"kind": "chunk-standin"}
