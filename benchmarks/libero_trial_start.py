"""Seconds for a fresh LIBERO adapter (a new worker or shard) to start a task at trial k.

    python benchmarks/libero_trial_start.py [--suite libero_spatial] [--task 0] [--trials 0,25,49]

Each trial gets a new adapter in this process (env build + the reset that trial k needs + 10 wait
steps, up to the first observation), as a worker that is handed a trial range starting at k. With the
release's per-trial seeding no earlier reset is replayed, so the time does not grow with k; run the
same script in a checkout of an older commit to compare (it uses only LiberoAdapter's public API).
"""

from __future__ import annotations

import argparse
import os
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
    parser.add_argument("--trials", default="0,25,49")
    args = parser.parse_args()
    trials = [int(t) for t in args.trials.split(",")]
    print("| trial k | seconds to the first observation (fresh adapter) |")
    print("|---|---|")
    for trial in trials:
        adapter = LiberoAdapter(load_suite(args.suite))
        spec = adapter.episodes(tasks=[args.task], episodes_per_task=trial + 1)[trial]
        start = time.perf_counter()
        adapter.reset(spec)
        elapsed = time.perf_counter() - start
        adapter.close()
        print(f"| {trial} | {elapsed:.1f} |", flush=True)


if __name__ == "__main__":
    main()
