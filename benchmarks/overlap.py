"""Wall time of async execution with the inference overlapped with the simulation, vs not (one run).

    python benchmarks/overlap.py [--service-ms 80] [--delay 4] [--steps 60] [--sim libero|fake]
                                 [--step-ms 20]

The same episode twice (libero_spatial task 0 trial 0 on the real simulator, or the fake simulator
with --step-ms per step), `--execution async` with a fixed delay of --delay control steps, a policy
that takes --service-ms per request (scripted chunks after a sleep, like a batch-1 model): once with
the chunk inferred while the simulator waits (overlap off) and once inferred in a background thread
while the simulator executes the committed steps (overlap on, the default). Prints both wall times,
the ratio, and checks that the two episodes executed the same actions.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.config import load_suite  # noqa: E402
from mibot_eval.run.episode import run_episode  # noqa: E402
from mibot_eval.run.scheduler import ChunkScheduler, make_execution_config  # noqa: E402
from tests.fakes import ScriptedPolicy  # noqa: E402


class ServicePolicy(ScriptedPolicy):
    def __init__(self, service_s: float) -> None:
        super().__init__(horizon=10)
        self.service_s = service_s

    def infer(self, requests):
        time.sleep(self.service_s * len(requests))
        return super().infer(requests)


def _adapter(args: argparse.Namespace):
    if args.sim == "libero":
        from mibot_eval.suites.libero import LiberoAdapter

        return LiberoAdapter(load_suite("libero_spatial"))
    import tempfile

    from mibot_eval.suites import base
    from tests.parallel_fakes import ADAPTER_ENTRY, FakeSimAdapter, write_suite

    base.ADAPTERS["fakesim"] = ADAPTER_ENTRY
    folder = Path(tempfile.mkdtemp(prefix="mibot-overlap-"))
    return FakeSimAdapter(load_suite(str(write_suite(folder, tasks=1, episodes=1, max_steps=args.steps,
                                                        step_sleep=args.step_ms / 1000))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service-ms", type=float, default=80.0)
    parser.add_argument("--delay", type=int, default=4)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--sim", choices=("libero", "fake"), default="libero")
    parser.add_argument("--step-ms", type=float, default=20.0, help="fake simulator: seconds per step")
    args = parser.parse_args()
    adapter = _adapter(args)
    protocol = adapter.protocol
    spec = adapter.episodes(tasks=[0], episodes_per_task=1)[0]
    config = make_execution_config("async", protocol.replan_steps, control_hz=protocol.control_hz,
                                   delay_steps=args.delay)
    adapter.reset(spec)  # build the env before timing
    rows, traces = [], []
    for overlap in (False, True):
        sched = ChunkScheduler(dataclasses.replace(config, overlap=overlap), protocol.hold_action,
                               protocol.hold_gripper)
        start = time.perf_counter()
        result = run_episode(adapter, ServicePolicy(args.service_ms / 1000), spec, sched,
                             protocol.default_robot_type, args.steps, seed_rule=protocol.request_seed)
        rows.append((overlap, time.perf_counter() - start, result.timings))
        traces.append([e.action.tobytes() for e in sched.trace])
    adapter.close()
    print(f"{args.sim} simulator, {args.steps} steps, async fixed delay {args.delay}, inference "
          f"{args.service_ms:g} ms per request, same episode twice\n")
    print("| inference | episode wall (s) | reset (s) | sim (s) | inference (s) | waited for inference (s) |")
    print("|---|---|---|---|---|---|")
    for overlap, wall, t in rows:
        print(f"| {'overlapped' if overlap else 'blocking'} | {wall:.2f} | {t['reset_s']:.2f} | "
              f"{t['sim_s']:.2f} | {t['infer_s']:.2f} | {t.get('infer_wait_s', t['infer_s']):.2f} |")
    print(f"\nratio (blocking / overlapped): {rows[0][1] / rows[1][1]:.2f}x; same actions: "
          f"{traces[0] == traces[1]}")


if __name__ == "__main__":
    main()
