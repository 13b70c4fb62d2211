"""A scripted expert for LIBERO "put X in the basket" tasks, so real-simulator episodes can succeed.

It is a Policy (tests and benchmarks only, never a product policy choice) that reads privileged
simulator state: `attach(adapter)` wraps the adapter's `reset`/`step` so that every observation the
adapter returns is paired with a snapshot of the scene at that moment (grip-site velocity, the target
object's collision bounding box and origin, the goal region's box). A request's chunk is planned from
the snapshot of *its* observation, never from the live simulator: with async execution the chunk is
inferred while the simulator keeps stepping, so it is planned from a stale state, like a model's.

Planning. One rule `decide(scene) -> (target, gripper)` picks the phase from the scene alone
(approach -> descend -> close -> lift -> transport -> lower); a chunk of T actions is a rollout of
that rule through a small internal model, open loop: the eef follows v' = ALPHA v + BETA a per axis
(fitted on the OSC_POSE controller: steady speed 1.35 cm/step at |a| = 1), the fingers follow
robosuite's ramped gripper command until they meet the object, a held object moves with the eef.
Each action drives the predicted eef toward the phase's target (speed: kp x distance, capped); the
gripper is -1 (open) / +1 (close); rotation stays 0. Under async execution with delay d the first d
actions of each chunk are dropped: what a plan does first (the last centimetres of a descent, the lift
after the grasp) never runs while its tail assumes it did, and d > k/2 adds idle steps, so success
falls as d grows (benchmarks/expert_sweep.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mibot_eval.types import Observation, PolicyRequest, StepResult

ACTION_DIM = 32  # the model's decoded layout; LIBERO uses dims 0-6
# eef velocity model per control step and axis: v' = ALPHA v + BETA a (m); steady 1.35 cm/step at
# |a| = 1; z stops faster than x/y (fitted on the OSC_POSE controller from the LIBERO start pose)
ALPHA = np.array([0.6, 0.55, 0.3])
BETA = 0.0135 * (1.0 - ALPHA)
GRIP_RAMP = 0.25  # robosuite's Panda gripper ramps its command 0.01 per substep: 0.25 per step
GRIP_TRACK = 0.3  # the fingers close this share of the gap to the commanded opening per step
OPEN_WIDTH = 0.079  # finger opening when fully open (qpos[0] - qpos[1]); command -1
GRIP_FIRM = 0.5  # lift only once the ramped command (-1 open .. 1 closed) squeezes this hard
EMPTY_WIDTH = 0.006  # below this the fingers closed on nothing
FLOOR_CLEARANCE = 0.012  # lowest grip-site height above the object's bottom (fingertips: 1.3 cm below)
CLEAR_HEIGHT = 0.17  # carry the object's bottom above this (basket rim 0.14, bottles 0.146)
HOVER = 0.06  # approach this far above the object's top
CONTROL_DT = 0.05  # robosuite control period (20 Hz)


@dataclass(frozen=True)
class Scene:
    """What the expert knows at one observation (world frame, metres)."""

    eef: np.ndarray  # grip-site position
    vel: np.ndarray  # grip-site displacement per control step
    width: float  # finger opening
    grip: float  # the gripper's ramped command (privileged: robosuite's current_action)
    obj_low: np.ndarray  # target object's collision bounding box
    obj_high: np.ndarray
    obj_origin: np.ndarray  # its body origin (what the goal predicate tests)
    region_center: np.ndarray  # goal region (LIBERO's contain box)
    region_half: np.ndarray

    @property
    def obj_center(self) -> np.ndarray:
        return (self.obj_low + self.obj_high) / 2


@dataclass(frozen=True)
class Gains:
    """Tunable behaviour; the defaults are the expert, other values degrade it on purpose."""

    max_speed: float = 0.012  # m per control step
    kp: float = 0.35  # share of the remaining distance commanded per step
    grasp_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # added to the grasp point (a bug)
    align_tol: float = 0.01  # xy error under which the expert descends


# A calibration bug: the grasp point 3 cm off along the finger axis (one finger lands on the object).
MISCALIBRATED = Gains(grasp_offset=(0.0, 0.03, 0.0))


def _goal(env: Any) -> tuple[str, str]:
    """(object, region site) of a single `(in object region)` BDDL goal."""
    goals = env.parsed_problem["goal_state"]
    if len(goals) != 1 or goals[0][0] != "in":
        raise ValueError(f"the scripted expert handles one (in object region) goal, got {goals}")
    return str(goals[0][1]), str(goals[0][2])


def _subtree_geoms(model: Any, root: int) -> list[int]:
    bodies = {root}
    for body in range(root + 1, model.nbody):
        if int(model.body_parentid[body]) in bodies:
            bodies.add(body)
    return [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in bodies
            and (model.geom_contype[g] or model.geom_conaffinity[g])]


def _bounding_box(model: Any, data: Any, geoms: list[int]) -> tuple[np.ndarray, np.ndarray]:
    corners = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    points = []
    for g in geoms:
        center, half = model.geom_aabb[g][:3], model.geom_aabb[g][3:]
        rot = data.geom_xmat[g].reshape(3, 3)
        points.append(data.geom_xpos[g] + (center + corners * half) @ rot.T)
    stacked = np.concatenate(points)
    return stacked.min(axis=0), stacked.max(axis=0)


def snapshot(adapter: Any, observation: Observation) -> Scene:
    """The privileged scene of a LIBERO adapter's simulator now (right after `observation`)."""
    env = adapter._env.env
    sim = env.sim
    obj, region = _goal(env)
    body = sim.model.body_name2id(env.objects_dict[obj].root_body)
    low, high = _bounding_box(sim.model._model, sim.data._data, _subtree_geoms(sim.model._model, body))
    site = env.object_sites_dict[region]
    half = np.abs(np.asarray(sim.data.get_site_xmat(region)) @ np.asarray(site.size, dtype=float))
    state = observation.state
    return Scene(
        eef=np.asarray(state[:3], dtype=float).copy(),
        vel=np.asarray(sim.data.get_site_xvelp(env.robots[0].controller.eef_name), float) * CONTROL_DT,
        width=float(state[6] - state[7]),
        grip=float(env.robots[0].gripper.current_action[-1]),
        obj_low=low, obj_high=high,
        obj_origin=np.asarray(sim.data.body_xpos[body], dtype=float).copy(),
        region_center=np.asarray(sim.data.get_site_xpos(region), dtype=float).copy(),
        region_half=half,
    )


def grasp_point(scene: Scene, gains: Gains) -> np.ndarray:
    """Grip-site target: the box's xy centre, mid-height (at most 3 cm below the top), off the floor."""
    low, high, center = scene.obj_low, scene.obj_high, scene.obj_center
    z = max(low[2] + FLOOR_CLEARANCE, min(center[2], high[2] - 0.03))
    return np.array([center[0], center[1], z]) + np.asarray(gains.grasp_offset)


def held(scene: Scene) -> bool:
    """Fingers closed on the object (not on nothing), the object between them."""
    squeezed = EMPTY_WIDTH < scene.width < _object_width(scene) + 0.006 and scene.grip > GRIP_FIRM
    return bool(_between_fingers(scene) and squeezed)


def _object_width(scene: Scene) -> float:
    """The object's extent along the finger axis (world y for the Panda's start pose)."""
    return float(scene.obj_high[1] - scene.obj_low[1])


def _between_fingers(scene: Scene) -> bool:
    near = np.linalg.norm(scene.obj_center[:2] - scene.eef[:2]) < 0.025
    return bool(near and scene.obj_low[2] - 0.015 < scene.eef[2] < scene.obj_high[2] + 0.005)


def decide(scene: Scene, gains: Gains) -> tuple[np.ndarray, float, str]:
    """(eef target, gripper command, phase) for a scene: the expert's whole policy."""
    eef = scene.eef
    if held(scene):
        offset = eef - scene.obj_origin  # keep the grasp: move the eef so the object goes where wanted
        over = np.abs(scene.obj_origin[:2] - scene.region_center[:2]) < scene.region_half[:2] - 0.03
        if over.all():
            goal = np.array([*scene.region_center[:2], scene.region_center[2] - 0.01])
            return goal + offset, 1.0, "lower"
        lift = eef[2] + CLEAR_HEIGHT - scene.obj_low[2]
        if scene.obj_low[2] < CLEAR_HEIGHT - 0.015:
            return np.array([eef[0], eef[1], lift]), 1.0, "lift"
        return np.array([*scene.region_center[:2], scene.obj_origin[2]]) + offset, 1.0, "transport"
    grasp = grasp_point(scene, gains)
    error = np.linalg.norm(grasp[:2] - eef[:2])
    at_grasp = error < gains.align_tol + 0.004 and abs(eef[2] - grasp[2]) < 0.006
    if at_grasp and scene.width > EMPTY_WIDTH:
        return grasp, 1.0, "close"
    hover = np.array([grasp[0], grasp[1], max(scene.obj_high[2] + HOVER, grasp[2] + HOVER)])
    if scene.width <= EMPTY_WIDTH:  # closed on nothing (a miss): open while going up
        return np.array([eef[0], eef[1], max(eef[2], hover[2])]), -1.0, "open"
    if scene.width < OPEN_WIDTH - 0.01:  # partly closed: open in place first
        return eef, -1.0, "open"
    if error < gains.align_tol:
        return grasp, -1.0, "descend"
    if eef[2] < hover[2] - 0.03 and error > 0.02:  # low and off target: rise before moving across
        return np.array([eef[0], eef[1], hover[2]]), -1.0, "rise"
    return hover, -1.0, "approach"


def _advance(scene: Scene, action: np.ndarray, gripper: float) -> Scene:
    """The internal model: one control step of the eef, the fingers and a held object."""
    vel = ALPHA * scene.vel + BETA * action
    eef = scene.eef + vel
    carried = held(scene) and gripper > 0
    grip = float(np.clip(scene.grip + GRIP_RAMP * np.sign(gripper), -1.0, 1.0))
    width = scene.width + GRIP_TRACK * (OPEN_WIDTH * (1.0 - grip) / 2 - scene.width)
    if _between_fingers(scene):  # the fingers stop on the object
        width = max(width, min(scene.width, _object_width(scene)))
    shift = vel if carried else np.zeros(3)
    return replace(scene, eef=eef, vel=vel, width=width, grip=grip, obj_low=scene.obj_low + shift,
                   obj_high=scene.obj_high + shift, obj_origin=scene.obj_origin + shift)


def plan_chunk(scene: Scene, horizon: int, gains: Gains) -> tuple[np.ndarray, list[str]]:
    """T actions (model layout, float32) rolled out open loop from one scene, and their phases."""
    chunk = np.zeros((horizon, ACTION_DIM), dtype=np.float32)
    phases = []
    for i in range(horizon):
        target, gripper, phase = decide(scene, gains)
        delta = target - scene.eef
        distance = float(np.linalg.norm(delta))
        speed = min(gains.max_speed, gains.kp * distance)
        wanted = delta / distance * speed if distance > 1e-9 else np.zeros(3)
        action = np.clip((wanted - ALPHA * scene.vel) / BETA, -1.0, 1.0)
        chunk[i, :3] = action
        chunk[i, 6] = gripper
        phases.append(phase)
        scene = _advance(scene, action, gripper)
    return chunk, phases


class ScriptedExpert:
    """Policy: plans each chunk from the privileged snapshot of the request's observation."""

    supports_prefix = False

    def __init__(self, horizon: int = 10, gains: Gains | None = None, label: str = "expert") -> None:
        self.horizon, self.gains, self.label = horizon, gains or Gains(), label
        self.phases: list[list[str]] = []  # per request, the planned phase of each action
        self._scenes: OrderedDict[int, tuple[Observation, Scene]] = OrderedDict()
        self._lock = threading.Lock()

    def attach(self, adapter: Any) -> Any:
        """Snapshot the scene whenever `adapter` (a LiberoAdapter) returns an observation."""
        reset, step = adapter.reset, adapter.step

        def hooked_reset(spec: Any) -> Observation:
            observation = reset(spec)
            self._remember(adapter, observation)
            return observation

        def hooked_step(action: np.ndarray, observe: bool) -> StepResult:
            result = step(action, observe)
            if result.observation is not None:
                self._remember(adapter, result.observation)
            return result

        adapter.reset, adapter.step = hooked_reset, hooked_step
        return adapter

    def _remember(self, adapter: Any, observation: Observation) -> None:
        scene = snapshot(adapter, observation)
        with self._lock:
            self._scenes[id(observation)] = (observation, scene)  # the reference keeps the id unique
            while len(self._scenes) > 4:
                self._scenes.popitem(last=False)

    def scene_of(self, observation: Observation) -> Scene:
        with self._lock:
            entry = self._scenes.get(id(observation))
        if entry is None or entry[0] is not observation:
            raise RuntimeError("no privileged snapshot for this observation: attach() the expert to "
                               "the adapter that produced it")
        return entry[1]

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        chunks = []
        for request in requests:
            chunk, phases = plan_chunk(self.scene_of(request.observation), self.horizon, self.gains)
            self.phases.append(phases)
            chunks.append(chunk)
        return chunks

    def describe(self) -> dict[str, Any]:
        return {"kind": "scripted_expert", "label": self.label, "horizon": self.horizon,
                "gains": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.gains).items()}}


def attaching(expert: ScriptedExpert) -> Callable[..., Any]:
    """A stand-in for `mibot_eval.run.planning.make_adapter` that attaches `expert` to what it builds."""
    from mibot_eval.suites.base import make_adapter

    def make(protocol: Any, **options: Any) -> Any:
        return expert.attach(make_adapter(protocol, **options))

    return make


@contextlib.contextmanager
def expert_adapters(expert: ScriptedExpert) -> Iterator[None]:
    """Within the block, runs (`mibot_eval.evaluate`, `runner.execute`) hand their adapters to `expert`."""
    from mibot_eval.run import planning

    original = planning.make_adapter
    planning.make_adapter = attaching(expert)
    try:
        yield
    finally:
        planning.make_adapter = original
