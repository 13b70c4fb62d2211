"""`mibot-eval inspect SUITE TASK TRIAL`: what one episode looks like to the policy at its first query.

For debugging protocol drift against another harness or the release's client: the scene the reset
placed (LIBERO: every body attached to the world, its placement and world pose; CALVIN: the start
state; SimplerEnv: the list entry), the first observation's image digests (md5, as the release's
seed hashes them, and sha256) and float64 state, the instruction and full prompt, and the release
seed of the first request. TASK is the task id as records store it (CALVIN: the sequence's index in
the shipped file; `--tasks` counts positions in the release's order instead).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.config import SuiteProtocol, load_suite
from mibot_eval.errors import UserError
from mibot_eval.policy.prompt import build_prompt
from mibot_eval.policy.seed import canonical_json, model_inputs, release_seed
from mibot_eval.suites.base import make_adapter


def inspect_episode(suite: str, task_id: int, trial: int, robot_type: str | None = None,
                    images_dir: Path | None = None) -> dict[str, Any]:
    """Reset one episode and describe its first query (see the module docstring)."""
    protocol = load_suite(suite)
    robot_type = robot_type or protocol.default_robot_type
    with contextlib.redirect_stdout(sys.stderr):  # simulators print to stdout; keep it for the result
        return _inspect(protocol, task_id, trial, robot_type, images_dir)


def _inspect(protocol: SuiteProtocol, task_id: int, trial: int, robot_type: str,
             images_dir: Path | None) -> dict[str, Any]:
    suite = protocol.name
    adapter = make_adapter(protocol, render="lazy")
    try:
        spec = next((s for s in adapter.episodes() if s.task_id == task_id and s.trial == trial), None)
        if spec is None:
            raise UserError(f"{suite} has no episode with task {task_id} and trial {trial}")
        observation = adapter.reset(spec)
        scene = adapter.scene()
    finally:
        adapter.close()
    rule = protocol.request_seed
    images = {}
    for label, image in observation.images.items():
        data = np.ascontiguousarray(image)
        images[label] = {"shape": list(data.shape), "md5": hashlib.md5(data.tobytes()).hexdigest(),
                         "sha256": hashlib.sha256(data.tobytes()).hexdigest()}
        if images_dir is not None:
            from PIL import Image

            images_dir.mkdir(parents=True, exist_ok=True)
            name = f"{spec.suite}_task{spec.task_id}_trial{spec.trial}_{label.replace(' ', '_')}.png"
            Image.fromarray(data).save(images_dir / name)
            images[label]["png"] = str(images_dir / name)
    inputs = model_inputs(observation, robot_type, rule)
    return {
        "suite": suite, "key": spec.key, "task_id": spec.task_id, "task_name": spec.task_name,
        "trial": spec.trial, "protocol_hash": protocol.protocol_hash(), "robot_type": robot_type,
        "instruction": observation.instruction,
        "prompt": build_prompt(list(observation.images), observation.instruction),
        "state": [float(v) for v in np.asarray(observation.state, dtype=np.float64)],
        "state_dtype": str(np.asarray(observation.state).dtype),
        "images": images,
        "release_seed": release_seed(observation, robot_type, rule),
        "seed_preimage_sha256": hashlib.sha256(canonical_json(inputs).encode("utf-8")).hexdigest(),
        "scene": scene,
    }


def render_text(info: dict[str, Any]) -> str:
    """A readable version of `inspect_episode`'s result."""
    lines = [f"{info['key']} ({info['task_name']}), protocol {info['protocol_hash']}, "
             f"robot type {info['robot_type']}",
             f"instruction: {info['instruction']!r}",
             f"release seed of the first request: {info['release_seed']}",
             f"state ({info['state_dtype']}): {' '.join(repr(v) for v in info['state'])}"]
    for label, image in info["images"].items():
        lines.append(f"image {label}: {image['shape']} md5 {image['md5']} sha256 {image['sha256'][:16]}...")
    bodies = (info.get("scene") or {}).get("bodies")
    if bodies:
        lines.append("bodies attached to the world (placement pos / quat w-x-y-z):")
        for name, body in bodies.items():
            pos = ", ".join(f"{v:.6f}" for v in body["pos"])
            quat = ", ".join(f"{v:.6f}" for v in body["quat"])
            lines.append(f"  {name:<40} pos [{pos}]  quat [{quat}]")
    elif info.get("scene"):
        lines.append("scene: " + json.dumps(info["scene"], sort_keys=True))
    lines.append("prompt:\n" + info["prompt"])
    return "\n".join(lines) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect", help="show what one episode's first query looks like (debug protocol drift)",
        description="Reset one episode and print the scene it placed (LIBERO: every body attached to "
        "the world with its position and orientation; CALVIN: the start state; SimplerEnv: the list "
        "entry), the first observation's image digests and float64 state, the instruction and "
        "prompt, and the release seed of the first request. TASK as records store it (CALVIN: the "
        "sequence index in the file).",
    )
    p.add_argument("suite", metavar="SUITE", help="suite name, e.g. libero_spatial")
    p.add_argument("task", type=int, metavar="TASK", help="task id (CALVIN: sequence index)")
    p.add_argument("trial", type=int, metavar="TRIAL", help="trial (init state) index")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--robot-type", default=None, help="robot type for the seed (default: the suite's)")
    p.add_argument("--save-images", type=Path, default=None, metavar="DIR",
                   help="also write the first observation's views as PNGs to DIR")
    p.set_defaults(handler=_cmd_inspect)


def _cmd_inspect(args: argparse.Namespace) -> int:
    info = inspect_episode(args.suite, args.task, args.trial, args.robot_type, args.save_images)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        print(render_text(info), end="")
    return 0
