"""Throughput of the harness on this machine, all ratios from one run (tiny checkpoint, real LIBERO).

    python benchmarks/throughput.py [--tasks 2] [--episodes 3] [--max-steps 60] [--json out.json]

1. Episodes: the same LIBERO episodes in this process (no workers), --workers 1 and --workers 2
   (wall time of `execute`, policy loaded once beforehand; env builds included, as in a real run).
2. Policy: observations per second of the tiny checkpoint at batch 1 and batch 8, in process and
   through `mibot-eval serve` (a separate process; batch 8 = 8 concurrent clients, batched by the
   server); two 256x256 views per observation, 1 torch thread everywhere.
3. Server overhead per request: B=1 round trip through the server minus the in-process call.
4. Harness overhead: the same episodes through the full harness (records, manifest, scheduler,
   trace hash) vs a bare loop calling the same LIBERO adapter and policy directly (alternating
   --repeats pairs, medians; both include building the task envs).
Prints markdown tables; --json also writes the raw numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def _policy():
    import torch

    from mibot_eval.policy.hf import HFPolicy
    from mibot_eval.tiny import ensure_tiny_checkpoint

    torch.set_num_threads(1)
    return HFPolicy(ensure_tiny_checkpoint(), device="cpu")


def _request(seed: int):
    from mibot_eval.types import Observation, PolicyRequest

    rng = np.random.default_rng(seed)
    images = {label: rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
              for label in ("Base View", "Left-Wrist View")}
    obs = Observation(images, rng.normal(size=8).astype(np.float32),
                      "Pick up the black bowl between the plate and the ramekin and place it on the plate.")
    return PolicyRequest(obs, "libero_all")


# -- 1 + 4: episodes ------------------------------------------------------------------------------
class CompletionWatch:
    """Timestamps each record as it lands in the run's episodes.jsonl (polled every 20 ms)."""

    def __init__(self, results: Path) -> None:
        self.results, self.stamps, self._stop = results, [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        seen = 0
        while not self._stop.is_set():
            path = next(self.results.glob("*/episodes.jsonl"), None) if self.results.exists() else None
            if path is not None:
                count = len(path.read_bytes().splitlines())
                self.stamps += [time.perf_counter()] * (count - seen)
                seen = count
            time.sleep(0.02)

    def __enter__(self) -> CompletionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.1)
        self._stop.set()
        self._thread.join()


CPU_SECONDS: dict[Path, float] = {}  # results folder -> CPU seconds of this process and its children


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_harness(policy, results: Path, args, **kw) -> tuple[float, float | None]:
    """(wall time, steady-state seconds per episode: after each worker's first episode).

    Also notes in CPU_SECONDS the CPU time spent meanwhile by this process and the worker processes
    (reaped when the run ends), so that cores busy = CPU seconds / wall seconds."""
    from mibot_eval.run.planning import RunRequest
    from mibot_eval.run.runner import execute

    request = RunRequest(checkpoint="tiny", suites=["libero_spatial"], tasks=list(range(args.tasks)),
                         episodes_per_task=args.episodes, max_steps=args.max_steps, video="none",
                         results_dir=results, **kw)
    with CompletionWatch(results) as watch:
        start, cpu = time.perf_counter(), _cpu_seconds()
        run_dir = execute(request, policy=policy)
        elapsed = time.perf_counter() - start
        CPU_SECONDS[results] = _cpu_seconds() - cpu
    lines = (run_dir / "episodes.jsonl").read_text().splitlines()
    assert all(json.loads(line)["status"] == "ok" for line in lines), "an episode errored"
    first = kw.get("workers") or 1
    stamps = watch.stamps
    steady = (stamps[-1] - stamps[first - 1]) / (len(stamps) - first) if len(stamps) > first else None
    return elapsed, steady


def run_bare(policy, args) -> tuple[float, int]:
    """The same episodes without the harness: adapter + policy + the official sync loop."""
    from mibot_eval.config import load_suite
    from mibot_eval.suites.libero import LiberoAdapter
    from mibot_eval.types import PolicyRequest

    protocol = load_suite("libero_spatial").with_overrides(max_steps=args.max_steps)
    start = time.perf_counter()
    adapter = LiberoAdapter(protocol)
    k = protocol.replan_steps
    count = 0
    for spec in adapter.episodes(list(range(args.tasks)), args.episodes):
        obs = adapter.reset(spec)
        actions: list[np.ndarray] = []
        for step in range(protocol.max_steps):
            if step % k == 0:
                chunk = policy.infer([PolicyRequest(obs, "libero_all")])[0]
                actions = list(adapter.to_env_actions(chunk)[:k])
            result = adapter.step(actions[step % k], observe=(step + 1) % k == 0)
            if result.observation is not None:
                obs = result.observation
            if result.success:
                break
        count += 1
    adapter.close()
    return time.perf_counter() - start, count


# -- 2 + 3: policy --------------------------------------------------------------------------------
def time_calls(fn, min_s: float = 3.0) -> float:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_s:
        fn()
        n += 1
    return (time.perf_counter() - start) / n


def in_process_policy(policy) -> dict[str, float]:
    reqs = [_request(i) for i in range(8)]
    t1 = time_calls(lambda: policy.infer(reqs[:1]))
    t8 = time_calls(lambda: policy.infer(reqs))
    return {"b1_latency_s": t1, "b1_obs_per_s": 1 / t1, "b8_latency_s": t8, "b8_obs_per_s": 8 / t8}


def start_server() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mibot_eval.cli", "serve", "tiny", "--port", "0",
                             "--device", "cpu", "--batch-size", "8", "--batch-wait-ms", "5"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline()
    if " on ws://" not in line:
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.split(" on ")[1].split()[0]


def server_policy(url: str, min_s: float = 3.0) -> dict[str, float]:
    from mibot_eval.serving.client import RemotePolicy

    one = RemotePolicy(url)
    req = _request(0)
    t1 = time_calls(lambda: one.infer([req]), min_s)
    one.close()
    clients = [RemotePolicy(url) for _ in range(8)]
    for c in clients:
        c.hello  # noqa: B018 - connect
    counts = [0] * 8
    stop = time.perf_counter() + min_s
    barrier = threading.Barrier(8)

    def loop(i: int) -> None:
        req = _request(i)
        clients[i].infer([req])
        barrier.wait()
        while time.perf_counter() < stop:
            clients[i].infer([req])
            counts[i] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    return {"b1_latency_s": t1, "b1_obs_per_s": 1 / t1, "b8_obs_per_s": sum(counts) / elapsed}


def health(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url.replace("ws://", "http://") + "/healthz", timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=3, help="trials per task")
    parser.add_argument("--max-steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3, help="bare/harness pairs (median)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    out: dict[str, object] = {"tasks": args.tasks, "episodes_per_task": args.episodes,
                              "max_steps": args.max_steps, "cpus": os.cpu_count()}
    policy = _policy()
    n_eps = args.tasks * args.episodes

    # 2 + 3 first (quiet machine)
    out["policy_in_process"] = inproc = in_process_policy(policy)
    proc, url = start_server()
    try:
        out["policy_server"] = served = server_policy(url)
        out["server_health"] = health(url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    overhead_ms = (served["b1_latency_s"] - inproc["b1_latency_s"]) * 1000

    # 1 + 4
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        times, steady = {}, {}
        times["in_process"], steady["in_process"] = run_harness(policy, tmp_path / "a", args)
        times["workers1"], steady["workers1"] = run_harness(policy, tmp_path / "b", args, workers=1)
        times["workers2"], steady["workers2"] = run_harness(policy, tmp_path / "c", args, workers=2)
        busy = {key: CPU_SECONDS[tmp_path / d] / times[key]
                for key, d in (("in_process", "a"), ("workers1", "b"), ("workers2", "c"))}
        bare, harness = [], []
        for i in range(args.repeats):  # alternate, so drift on the machine hits both alike
            bare.append(run_bare(policy, args)[0])
            harness.append(run_harness(policy, tmp_path / f"h{i}", args)[0])
    out["episodes_wall_s"], out["steady_s_per_episode"], out["cores_busy"] = times, steady, busy
    out["bare_loop_s"], out["harness_s"] = bare, harness
    bare_s, harness_s = statistics.median(bare), statistics.median(harness)

    rows = [("in process (no workers)", "in_process"), ("--workers 1", "workers1"),
            ("--workers 2", "workers2")]
    print(f"\n### Episodes: LIBERO libero_spatial, {args.tasks} tasks x {args.episodes} trials, "
          f"{args.max_steps} steps, tiny checkpoint, {os.cpu_count()} CPUs\n")
    print("| mode | wall time (s) | episodes/min (wall) | speed-up (wall) | steady state: "
          "episodes/min | speed-up (steady) | CPU cores busy |")
    print("|---|---|---|---|---|---|---|")
    for name, key in rows:
        t, st = times[key], steady[key]
        print(f"| {name} | {t:.1f} | {60 * n_eps / t:.1f} | {times['workers1'] / t:.2f}x | "
              f"{60 / st:.1f} | {steady['workers1'] / st:.2f}x | {busy[key]:.2f} |")
    cpus = os.cpu_count() or 1
    print("\n(wall: the whole `execute`, start-up and env builds included; steady state: after each "
          "worker's first episode; speed-ups relative to --workers 1; CPU cores busy: CPU seconds of "
          "this process and its workers / wall seconds)")
    print(f"\nOne worker already keeps {busy['workers1']:.2f} of {cpus} cores busy (software EGL "
          "renders with LP_NUM_THREADS = its share of the cores; the main process runs the policy), so "
          f"on {cpus} cores --workers 2 can reach at most about {min(2, cpus) / busy['workers1']:.2f}x "
          "of one worker.")
    print("\n### Policy throughput (tiny checkpoint, 2x256x256 views, 1 torch thread)\n")
    print("| path | batch 1: obs/s (latency ms) | batch 8: obs/s | batch 8 / batch 1 |")
    print("|---|---|---|---|")
    print(f"| in process | {inproc['b1_obs_per_s']:.0f} ({1000 * inproc['b1_latency_s']:.1f}) | "
          f"{inproc['b8_obs_per_s']:.0f} | {inproc['b8_obs_per_s'] / inproc['b1_obs_per_s']:.2f}x |")
    print(f"| server (8 clients for batch 8) | {served['b1_obs_per_s']:.0f} "
          f"({1000 * served['b1_latency_s']:.1f}) | {served['b8_obs_per_s']:.0f} | "
          f"{served['b8_obs_per_s'] / served['b1_obs_per_s']:.2f}x |")
    print(f"\nServer overhead per request (B=1 round trip minus in-process call): {overhead_ms:.2f} ms "
          f"(server mean batch under 8 clients: {out['server_health'].get('mean_batch')})")
    print(f"\n### Harness overhead\n\n| loop | wall time (s), median of {args.repeats} "
          "| per episode (s) |\n|---|---|---|\n"
          f"| bare loop (adapter + policy) | {bare_s:.2f} | {bare_s / n_eps:.2f} |\n"
          f"| full harness (in process) | {harness_s:.2f} | {harness_s / n_eps:.2f} |\n"
          f"\nharness / bare = {harness_s / bare_s:.3f} (runs: bare "
          f"{', '.join(f'{t:.2f}' for t in bare)}; harness {', '.join(f'{t:.2f}' for t in harness)})")
    out["server_overhead_ms"] = overhead_ms
    out["harness_over_bare"] = harness_s / bare_s
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
