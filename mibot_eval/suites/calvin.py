"""CALVIN adapter (calvin_env / PyBullet), official long-horizon protocol of the Xiaomi-Robotics-0 release.

Order: the release shuffles the sequence file with random.seed(42) and runs the first N of that order
(`sequence_order.shuffle_seed`); `--tasks` / SEQUENCES=N select positions in that order, and every
record's task_id is the sequence's index in the file (so resume and shards key on the sequence).

One harness episode is one evaluation sequence: the env is reset once to the sequence's start state,
then its 5 subtasks run in order. Per subtask the policy is reset (StepResult.reset_policy), the
instruction is the subtask's validation annotation, and CALVIN's task oracle checks success after every
env step, for at most `subtask_max_steps` steps; the first failed subtask ends the sequence. The record
keeps the sequence index (task_id) and, in its metrics, how many subtasks were completed and which.

Sources: CALVIN's evaluation (mees/calvin, calvin_models/calvin_agent/evaluation/evaluate_policy.py and
utils.py), calvin_env (mees/calvin_env), and the release's client (eval_calvin/main.py). Protocol numbers
live in data/suites/calvin_*.yaml; the sequence list and annotations ship in data/calvin/.

Size (about 490 lines, over the house's 400): one simulator's adapter with the start-state, order and
annotation rules it needs; it is split when the benchmark gets its own folder under suites/.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mibot_eval.config import SuiteProtocol
from mibot_eval.errors import UserError
from mibot_eval.suites import calvin_sim
from mibot_eval.suites.base import check_render_mode, first_dims, format_instruction, select_episodes
from mibot_eval.types import EpisodeSpec, Observation, StepResult

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "calvin"
CHAIN_LENGTH = 5

# -- start states ---------------------------------------------------------------------------------
# CALVIN's evaluation start state for a symbolic start condition (calvin_models/calvin_agent/
# evaluation/utils.py, get_env_state_for_initial_condition). The robot always starts in one pose
# (robot_obs: tcp position, tcp euler, gripper width, 7 joints, gripper action +1 = open). The scene
# follows the condition; which table spot each table block takes, and every block's yaw, come from
# numpy's legacy RNG seeded with pyhash.fnv1_32(str(condition.values())).
START_ROBOT_OBS = (
    0.02586889, -0.2313129, 0.5712808, 3.09045411, -0.02908596, 1.50013585, 0.07999963,
    -1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928, 1.0,
)
SLIDER_BLOCK_POSITION = {
    "slider_left": (-2.40851662e-01, 9.24044687e-02, 4.60990009e-01),
    "slider_right": (7.03416330e-02, 9.24044687e-02, 4.60990009e-01),
}
TABLE_BLOCK_POSITIONS = (
    (5.00000896e-02, -1.20000177e-01, 4.59990009e-01),
    (2.29995412e-01, -1.19995140e-01, 4.59990010e-01),
)
BLOCK_YAW_RANGE = (math.pi / 2 - math.pi / 8, math.pi / 2 + math.pi / 8)
SLIDER_LEFT_JOINT = 0.28  # scene_obs[0] when the sliding door is left
DRAWER_OPEN_JOINT = 0.22  # scene_obs[1] when the drawer is open
SWITCH_ON_JOINT = 0.088  # scene_obs[3] when the light bulb is on
# scene_obs (24): slider, drawer, button, switch joints; lightbulb, led states; then red, blue and
# pink blocks as position (3) + euler (3).
BLOCK_SLICES = {"red_block": slice(6, 12), "blue_block": slice(12, 18), "pink_block": slice(18, 24)}

FNV_32_PRIME = 0x01000193


def fnv1_32(data: bytes, seed: int = 0) -> int:
    """FNV-1 32-bit hash starting from `seed` (pyhash.fnv1_32 uses seed 0, not the offset basis)."""
    value = seed & 0xFFFFFFFF
    for byte in data:
        value = (value * FNV_32_PRIME) & 0xFFFFFFFF
        value ^= byte
    return value


def condition_seed(condition: Mapping[str, Any]) -> int:
    """CALVIN's per-condition RNG seed: pyhash.fnv1_32 of str(condition.values()).

    pyhash hashes a Python 3 str as its UTF-16-LE bytes (no BOM). The key order matters: it is the
    order of CALVIN's generator, which the shipped sequence file keeps.
    """
    return fnv1_32(str(condition.values()).encode("utf-16-le"))


def start_state(condition: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(robot_obs (15,), scene_obs (24,)) for a sequence's start condition, as CALVIN derives them."""
    rng = np.random.RandomState(condition_seed(condition))  # same draws as np.random.seed(seed)
    table = [np.array(p) for p in TABLE_BLOCK_POSITIONS]
    rng.shuffle(table)
    scene = np.zeros(24)
    if condition["slider"] == "left":
        scene[0] = SLIDER_LEFT_JOINT
    if condition["drawer"] == "open":
        scene[1] = DRAWER_OPEN_JOINT
    if condition["lightbulb"] == 1:
        scene[3] = SWITCH_ON_JOINT
    scene[4] = condition["lightbulb"]
    scene[5] = condition["led"]
    # A block on the table takes the first shuffled spot unless an earlier block already did
    # (red first, then blue, then pink; at most two blocks are on the table).
    table_spot = {
        "red_block": 0,
        "blue_block": 1 if condition["red_block"] == "table" else 0,
        "pink_block": 1,
    }
    for block, where in ((b, condition[b]) for b in ("red_block", "blue_block", "pink_block")):
        part = BLOCK_SLICES[block]
        position = SLIDER_BLOCK_POSITION.get(where)
        scene[part.start : part.start + 3] = position if position else table[table_spot[block]]
        scene[part.start + 5] = rng.uniform(*BLOCK_YAW_RANGE)  # yaw; roll and pitch stay 0
    return np.array(START_ROBOT_OBS), scene


# -- data -----------------------------------------------------------------------------------------
def data_file(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        raise UserError(f"{path}: CALVIN data file missing from the installed package (reinstall it)")
    return path


def load_sequences(path: Path) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """The evaluation sequences, in file order: (start condition, subtask names)."""
    with path.open(encoding="utf-8") as stream:
        raw = json.load(stream)
    return [(dict(condition), tuple(subtasks)) for condition, subtasks in raw]


def load_annotations(path: Path) -> dict[str, str]:
    """Subtask -> instruction: the first validation annotation (CALVIN: val_annotations[subtask][0])."""
    with path.open(encoding="utf-8") as stream:
        raw = yaml.safe_load(stream)
    return {task: texts[0] for task, texts in raw.items()}


# -- conversions ----------------------------------------------------------------------------------
def center_crop_resize(image: np.ndarray, ratio: float, interpolation: str = "bilinear") -> np.ndarray:
    """Centre-crop `ratio` of each side, then resize back to the original size (release: PIL image,
    torchvision crop + resize, whose PIL path is Image.crop + Image.resize with BILINEAR)."""
    from PIL import Image

    modes = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
    if interpolation not in modes:
        raise UserError(f"unknown resize interpolation {interpolation!r} (known: {', '.join(modes)})")
    h, w = image.shape[:2]
    crop_h, crop_w = int(h * ratio), int(w * ratio)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    out = pil.crop((left, top, left + crop_w, top + crop_h)).resize((w, h), modes[interpolation])
    return np.asarray(out, dtype=np.uint8)


def binarize_gripper(actions: np.ndarray, threshold: float) -> np.ndarray:
    """Last dim -> +1 (open) where > threshold, else -1 (close): calvin_env takes only +/-1."""
    out = np.array(actions, dtype=np.float64)
    out[:, -1] = np.where(out[:, -1] > threshold, 1.0, -1.0)
    return out


def release_order(count: int, seed: int) -> list[int]:
    """File indices in the release's order: random.seed(seed); random.shuffle(sequences)."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return order


# -- results --------------------------------------------------------------------------------------
def chain_rates(completed: Iterable[int], length: int = CHAIN_LENGTH) -> dict[str, float]:
    """CALVIN's metrics from completed-subtask counts: chain_k = % of sequences with >= k subtasks
    done in a row (k = 1..length), avg_len = mean completed subtasks."""
    counts = [int(c) for c in completed]
    if not counts:
        return {}
    result = {f"chain_{k}": 100.0 * sum(c >= k for c in counts) / len(counts) for k in range(1, length + 1)}
    result["avg_len"] = sum(counts) / len(counts)
    return result


def subtask_breakdown(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per subtask: how often it was reached and how often it succeeded.

    Each record is paired with its OWN subtask list (metrics.subtasks), whatever order or shard the
    records come in (the official client pairs shuffled results with the unshuffled list here).
    """
    table: dict[str, dict[str, int]] = {}
    for record in records:
        if record.get("status", "ok") != "ok":
            continue
        metrics = record["metrics"]
        done, subtasks = int(metrics["completed"]), list(metrics["subtasks"])
        for i, name in enumerate(subtasks[: done + 1]):
            entry = table.setdefault(name, {"success": 0, "total": 0})
            entry["total"] += 1
            entry["success"] += int(i < done)
    return dict(sorted(table.items()))


def calvin_summary(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Chain rates, average length and per-subtask counts over finished (status ok) records."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    summary: dict[str, Any] = dict(chain_rates(int(r["metrics"]["completed"]) for r in ok))
    summary["sequences"] = len(ok)
    summary["subtasks"] = subtask_breakdown(ok)
    return summary


# -- adapter --------------------------------------------------------------------------------------
def _param(protocol: SuiteProtocol, data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise UserError(f"{protocol.source}: missing CALVIN field '{key}'")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"{protocol.source}: CALVIN field '{key}' has the wrong type: {value!r}")
    return value


class CalvinAdapter:
    """One CALVIN suite (ABC->D or ABCD->D; both evaluate in scene D).

    env_factory / oracle: stand-ins for tests; by default calvin_env builds the env (a fresh one per
    sequence, like the release's client) from a dataset config ($CALVIN_DATASET or `dataset`) or from
    calvin_env's own config, and the oracle from the shipped task definitions.
    """

    def __init__(
        self,
        protocol: SuiteProtocol,
        render: str = "lazy",
        record_video: bool = False,
        dataset: str | None = None,
        env_factory: Callable[[], Any] | None = None,
        oracle: Any = None,
    ) -> None:
        self.protocol = protocol
        self.render_mode = check_render_mode(render)
        self.record_video = record_video
        p = protocol.params
        self.subtask_max_steps = int(_param(protocol, p, "subtask_max_steps", int))
        self.chain_length = int(_param(protocol, p, "subtasks_per_sequence", int))
        self.crop_ratio = float(_param(protocol, p, "crop_ratio", (int, float)))
        self.interpolation = str(_param(protocol, p, "resize_interpolation", str))
        self.gripper_threshold = float(_param(protocol, p, "gripper_threshold", (int, float)))
        self.fresh_env = bool(_param(protocol, p, "fresh_env_per_sequence", bool))
        order = _param(protocol, p, "sequence_order", dict)
        self.shuffle_seed = _param(protocol, order, "shuffle_seed", int)
        self.calvin_env_commit = str(_param(protocol, p, "calvin_env_commit", str))
        env_cfg = _param(protocol, p, "env", dict)
        data_cfg = _param(protocol, p, "data", dict)
        self.scene = str(_param(protocol, env_cfg, "scene", str))
        self.robot = str(_param(protocol, env_cfg, "robot", str))
        self.cameras = [str(c) for c in _param(protocol, env_cfg, "cameras", list)]
        self.views = {str(k): str(v) for k, v in _param(protocol, env_cfg, "views", dict).items()}
        self.image_sizes = {
            str(k): (int(v[0]), int(v[1])) for k, v in _param(protocol, env_cfg, "image_sizes", dict).items()
        }
        self.state_dims = int(_param(protocol, env_cfg, "state_dims", int))
        self.video_key = next(iter(self.views.values()))  # first prompt view: the static camera
        if not 0 < self.crop_ratio <= 1:
            raise UserError(f"{protocol.source}: crop_ratio must be in (0, 1], got {self.crop_ratio}")
        unknown = sorted(set(self.views.values()) - set(self.image_sizes))
        if unknown:
            raise UserError(f"{protocol.source}: no image size for view(s) {unknown}")

        self.sequences = load_sequences(data_file(str(_param(protocol, data_cfg, "sequences", str))))
        self.annotations = load_annotations(data_file(str(_param(protocol, data_cfg, "annotations", str))))
        self._tasks_yaml = data_file(str(_param(protocol, data_cfg, "tasks", str)))
        if len(self.sequences) != protocol.num_tasks:
            raise UserError(
                f"{protocol.source}: the sequence file has {len(self.sequences)} sequences, "
                f"the YAML says num_tasks {protocol.num_tasks}"
            )
        self.order = release_order(len(self.sequences), self.shuffle_seed)
        bad = sorted({t for _, s in self.sequences for t in s} - set(self.annotations))
        if bad or any(len(s) != self.chain_length for _, s in self.sequences):
            raise UserError(f"{protocol.source}: malformed sequences (unknown subtasks {bad})")

        self._calvin_env: Any = None
        self._config: Any = None
        self._dataset_config: Path | None = None
        if env_factory is None:
            self._calvin_env = calvin_sim.import_calvin_env()
            self._dataset_config = calvin_sim.resolve_dataset_config(dataset)
            self.env_config = (
                f"dataset:{self._dataset_config}" if self._dataset_config
                else f"calvin_env default config (conf/config_data_collection.yaml, scene {self.scene})"
            )
            self._env_factory: Callable[[], Any] = self._build_env
        else:
            self._env_factory = env_factory
            self.env_config = str(getattr(env_factory, "label", "injected env factory"))
        self._oracle = oracle

        self._env: Any = None
        self._spec: EpisodeSpec | None = None
        self._subtasks: tuple[str, ...] = ()
        self._index = 0
        self._completed = 0
        self._subtask_steps: list[int] = []
        self._steps = 0
        self._start_info: Any = None
        self._gripper = 1.0
        self._last_obs: dict[str, Any] | None = None
        self._outcome = "running"
        self._instruction = ""
        self.renders = 0  # get_obs()/step renders performed (each renders every camera once)

    # -- episodes ---------------------------------------------------------------------------------
    def episodes(
        self, tasks: Sequence[int] | None = None, episodes_per_task: int | None = None
    ) -> list[EpisodeSpec]:
        """One episode per sequence in the release's order; `tasks` are positions in that order
        (0-9: its first ten sequences), task_id is the sequence's index in the shipped file."""
        positions, n = select_episodes(self.protocol, tasks, episodes_per_task, noun="sequence")
        return [
            EpisodeSpec(suite=self.protocol.name, task_id=index, task_name=f"seq{index:04d}", trial=trial,
                        seed=self.protocol.seed, instruction=self.chain_text(index))
            for index in (self.order[pos] for pos in positions)
            for trial in range(n)
        ]

    def chain_text(self, index: int) -> str:
        """The sequence's instructions as the policy receives them, in order, joined by ' -> '."""
        return " -> ".join(self.instruction(subtask) for subtask in self.sequences[index][1])

    def instruction(self, subtask: str) -> str:
        return format_instruction(self.annotations[subtask], self.protocol.params.get("instruction_format"))

    # -- env lifecycle ----------------------------------------------------------------------------
    def _build_env(self) -> Any:
        if self._config is None:
            if self._dataset_config is not None:
                self._config = calvin_sim.dataset_config(self._dataset_config, self.cameras)
            else:
                self._config = calvin_sim.default_config(
                    self._calvin_env, self.scene, self.robot, self.cameras
                )
        return calvin_sim.build_env(self._config)

    def _oracle_or_build(self) -> Any:
        if self._oracle is None:
            self._oracle = calvin_sim.build_oracle(self._tasks_yaml)
        return self._oracle

    def close(self) -> None:
        if self._env is not None:
            calvin_sim.close_env(self._env)
        self._env = None

    def describe(self) -> dict[str, Any]:
        """What identifies the simulator setup, for the run manifest."""
        info: dict[str, Any] = {
            "env_config": self.env_config,
            "render": self.render_mode,
            "fresh_env_per_sequence": self.fresh_env,
            "sequence_order": f"release: random.Random({self.shuffle_seed}).shuffle over the file order",
            "calvin_env_commit_expected": self.calvin_env_commit,
        }
        if self._calvin_env is not None:
            package_dir = Path(self._calvin_env.__file__).resolve().parent
            info["calvin_env_path"] = str(package_dir.parent)
            info["calvin_env_commit"] = calvin_sim.calvin_env_commit(package_dir)
        return info

    # -- episode ----------------------------------------------------------------------------------
    def reset(self, spec: EpisodeSpec) -> Observation:
        condition, subtasks = self.sequences[spec.task_id]
        self._oracle_or_build()
        if self._env is None or self.fresh_env or not calvin_sim.is_open(self._env):
            self.close()
            self._env = self._env_factory()
        robot_obs, scene_obs = start_state(condition)
        obs = self._env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
        self.renders += 1
        self._spec, self._subtasks = spec, subtasks
        self._index, self._completed, self._steps = 0, 0, 0
        self._subtask_steps = [0]
        self._gripper = float(robot_obs[-1])
        self._outcome = "running"
        return self._begin_subtask(obs)

    def _begin_subtask(self, obs: dict[str, Any]) -> Observation:
        """Start the current subtask: new instruction, start info for the oracle (CALVIN's rollout)."""
        self._instruction = self.instruction(self._subtasks[self._index])
        self._start_info = self._env.get_info()
        self._last_obs = obs
        return self._observation(obs)

    def _env_action(self, action: np.ndarray) -> np.ndarray:
        """float32 like the release's client (calvin_env scales relative actions in their dtype);
        gripper 0 (the hold action) keeps the last gripper command."""
        out = np.asarray(action, dtype=np.float32).copy()
        if out.shape != (7,):
            raise ValueError(f"CALVIN takes 7-d relative actions, got shape {out.shape}")
        if out[6] == 0:
            out[6] = self._gripper
        if out[6] not in (-1.0, 1.0):
            raise ValueError(f"CALVIN gripper action must be +1 or -1, got {out[6]}")
        return out

    def step(self, action: np.ndarray, observe: bool) -> StepResult:
        """One env step, then CALVIN's oracle on the current subtask (as its rollout does).

        Lazy rendering renders after the oracle, only when someone reads the picture: the policy's
        next query (`observe`, or a subtask switch, which always re-queries) or the video; a step
        that ends the sequence renders nothing.
        """
        if self._outcome != "running":
            raise RuntimeError("step() after the sequence ended; call reset()")
        env_action = self._env_action(action)
        obs: dict[str, Any] | None = None
        if self.render_mode == "eager":
            obs, _, _, info = self._env.step(env_action)
            self.renders += 1
        else:
            info = calvin_sim.step_physics(self._env, env_action)
        self._gripper = float(env_action[6])
        self._steps += 1
        self._subtask_steps[-1] += 1
        subtask = self._subtasks[self._index]
        solved = bool(self._oracle.get_task_info_for_set(self._start_info, info, {subtask}))
        if solved:
            self._completed += 1
            if self._completed == len(self._subtasks):
                self._outcome = "all_done"
        elif self._subtask_steps[-1] >= self.subtask_max_steps:
            self._outcome = "subtask_timeout"
        done = self._outcome != "running"
        switch = solved and not done
        if obs is None and (self.record_video or (not done and (observe or switch))):
            obs = self._env.get_obs()
            self.renders += 1
        if obs is not None:
            self._last_obs = obs
        if switch:
            assert obs is not None
            self._index += 1
            self._subtask_steps.append(0)
            observation = self._begin_subtask(obs)
            return StepResult(False, False, observation, reset_policy=True, info={"subtask_done": subtask})
        observation = self._observation(obs) if observe and obs is not None else None
        if done:
            info_out = {"subtask_done" if solved else "subtask_failed": subtask}
            return StepResult(solved, True, observation, info=info_out)
        return StepResult(False, False, observation)

    def _observation(self, obs: dict[str, Any]) -> Observation:
        images = {}
        for label, key in self.views.items():
            image = np.asarray(obs["rgb_obs"][key])
            if image.shape[:2] != self.image_sizes[key]:
                raise UserError(
                    f"CALVIN camera {key} renders {image.shape[:2]}, the protocol expects "
                    f"{self.image_sizes[key]} (env config: {self.env_config})"
                )
            images[label] = center_crop_resize(image, self.crop_ratio, self.interpolation)
        state = np.asarray(obs["robot_obs"], dtype=np.float64)[: self.state_dims]  # float64, as sent
        return Observation(images=images, state=state, instruction=self._instruction)

    def to_env_actions(self, chunk: np.ndarray) -> np.ndarray:
        return binarize_gripper(first_dims(chunk, self.protocol.action_dim), self.gripper_threshold)

    def video_frame(self) -> np.ndarray | None:
        if self._last_obs is None:
            return None
        return np.ascontiguousarray(self._last_obs["rgb_obs"][self.video_key], dtype=np.uint8)

    def scene(self) -> dict[str, Any]:
        """The start state the last reset placed (for `mibot-eval inspect`)."""
        if self._spec is None:
            return {}
        condition, subtasks = self.sequences[self._spec.task_id]
        robot_obs, scene_obs = start_state(condition)
        return {"sequence": self._spec.task_id, "release_position": self.order.index(self._spec.task_id),
                "condition": condition, "subtasks": list(subtasks),
                "robot_obs": robot_obs.tolist(), "scene_obs": scene_obs.tolist()}

    def episode_metrics(self) -> dict[str, object]:
        """Merged into the episode record: chain progress and which subtasks the sequence holds."""
        if self._spec is None:
            return {}
        outcome = self._outcome if self._outcome != "running" else "stopped"  # harness step limit
        steps = [s for s in self._subtask_steps if s > 0] if outcome == "stopped" else self._subtask_steps
        return {
            "sequence": self._spec.task_id,
            "release_position": self.order.index(self._spec.task_id),
            "completed": self._completed,
            "subtasks": list(self._subtasks),
            "subtask_steps": list(steps),
            "failed_subtask": self._subtasks[self._completed] if outcome == "subtask_timeout" else None,
            "outcome": outcome,
            "env_config": self.env_config,
        }
