"""Seconds per LIBERO trial reset: a reused scene (soft reset) vs a hard reset every trial.

    python benchmarks/libero_reset.py [--suite libero_spatial] [--task 0] [--trials 6]

One adapter runs trials 0..n-1 of one task, timing `reset` (re-seed, reset, init state, 10 wait steps,
first observation) for each. Mode "reused scene" is the adapter as shipped: trial 0 hard resets, later
trials soft reset the same scene (suites/libero_reset.py, equal to a new env: tested). Mode "hard every
trial" turns the reuse off, as the adapter did before. Both modes alternate per trial (ABAB) in one run,
so drift on the machine hits both alike; trial 0 (both hard) is reported apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.config import load_suite  # noqa: E402
from mibot_eval.suites.libero import LiberoAdapter  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--trials", type=int, default=6)
    args = parser.parse_args()
    adapters = {"reused scene": LiberoAdapter(load_suite(args.suite)),
                "hard every trial": LiberoAdapter(load_suite(args.suite))}
    seconds: dict[str, list[float]] = {mode: [] for mode in adapters}
    try:
        specs = adapters["reused scene"].episodes(tasks=[args.task], episodes_per_task=args.trials)
        for spec in specs:
            for mode, adapter in adapters.items():
                if mode == "hard every trial" and adapter._env is not None:
                    adapter._scene = None  # what the adapter did before the scene was reused
                start = time.perf_counter()
                adapter.reset(spec)
                seconds[mode].append(time.perf_counter() - start)
    finally:
        for adapter in adapters.values():
            adapter.close()
    print(f"{args.suite} task {args.task}, trials 0..{args.trials - 1}, seconds per reset "
          "(up to the first observation):")
    print("| mode | trial 0 (env build + hard reset) | trials 1.. mean | trials 1.. median |")
    print("|---|---|---|---|")
    for mode, values in seconds.items():
        rest = values[1:]
        print(f"| {mode} | {values[0]:.2f} | {statistics.mean(rest):.2f} | {statistics.median(rest):.2f} |")
    ratio = statistics.mean(seconds["hard every trial"][1:]) / statistics.mean(seconds["reused scene"][1:])
    print(f"hard / reused, trials 1..: {ratio:.1f}x")


if __name__ == "__main__":
    main()
