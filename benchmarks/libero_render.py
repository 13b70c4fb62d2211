"""Wall time of one LIBERO episode with lazy rendering vs rendering every step (same episode, one run).

    python benchmarks/libero_render.py [--suite libero_spatial] [--task 0] [--trial 0] [--max-steps N]

Both modes run the same episode with the same policy (the tiny checkpoint through the real loading
path, or --policy scripted for a model-free run) on this machine, one after the other in one process;
the env is built before timing starts. Prints a markdown table and the eager/lazy ratio, and checks
that both modes produced the same outcome.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.config import load_suite  # noqa: E402
from mibot_eval.run.episode import run_episode  # noqa: E402
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig  # noqa: E402
from mibot_eval.suites.libero import LiberoAdapter  # noqa: E402


def make_policy(kind: str):
    if kind == "scripted":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.fakes import ScriptedPolicy

        return ScriptedPolicy()
    import torch

    from mibot_eval.policy.hf import HFPolicy
    from mibot_eval.tiny import ensure_tiny_checkpoint

    torch.set_num_threads(1)
    return HFPolicy(ensure_tiny_checkpoint(), device="cpu")


def time_episode(render: str, args: argparse.Namespace, policy) -> tuple[float, object, int]:
    protocol = load_suite(args.suite)
    if args.max_steps:
        protocol = protocol.with_overrides(max_steps=args.max_steps)
    adapter = LiberoAdapter(protocol, render=render)
    spec = adapter.episodes(tasks=[args.task], episodes_per_task=args.trial + 1)[args.trial]
    adapter.reset(spec)  # build the env (and warm up) outside the timed region
    scheduler = ChunkScheduler(ExecutionConfig("sync", protocol.replan_steps), protocol.hold_action)
    start = time.perf_counter()
    result = run_episode(adapter, policy, spec, scheduler, "libero_all", protocol.max_steps)
    elapsed = time.perf_counter() - start
    adapter.close()
    return elapsed, result, protocol.max_steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--trial", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--policy", choices=("tiny", "scripted"), default="tiny")
    args = parser.parse_args()
    policy = make_policy(args.policy)
    lazy_s, lazy_result, max_steps = time_episode("lazy", args, policy)
    eager_s, eager_result, _ = time_episode("eager", args, policy)
    same = (lazy_result.success, lazy_result.steps) == (eager_result.success, eager_result.steps)
    print(f"LIBERO {args.suite} task {args.task} trial {args.trial}, max_steps {max_steps}, "
          f"policy {args.policy}, {lazy_result.steps} steps")
    print("| rendering | episode wall time (s) | of which reset + 10 wait steps (s) | acting (s) |")
    print("|---|---|---|---|")
    for name, secs, res in (("lazy", lazy_s, lazy_result), ("every step", eager_s, eager_result)):
        reset = res.timings["reset_s"]
        print(f"| {name} | {secs:.1f} | {reset:.1f} | {secs - reset:.1f} |")
    acting = (eager_s - eager_result.timings["reset_s"]) / (lazy_s - lazy_result.timings["reset_s"])
    print(f"ratio (every step / lazy): whole episode {eager_s / lazy_s:.1f}x, "
          f"acting steps {acting:.1f}x; same outcome: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
