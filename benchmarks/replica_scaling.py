"""Throughput of `--replicas R` with a stand-in for the released model's batch-1 service time.

    python benchmarks/replica_scaling.py [--service-ms 80] [--replicas 1,2,4,8] [--seconds 8]

Each replica is what `run --replicas R` starts (mibot_eval/serving/replicas.py: a policy server in
its own process); the policy here takes --service-ms per forward at batch 1 and seeds one forward
per request, like the released checkpoints (no per-sample seeds, so no batching). R clients (the
simulators' side, RemotePolicy) send requests back to back for --seconds; the table gives chunks/s
and the speed-up over one replica. On a GPU the real model's forwards share the device, so the
scaling measured here is the harness's (dispatch, wire format, processes), an upper bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mibot_eval.serving.client import RemotePolicy  # noqa: E402
from mibot_eval.serving.replicas import ReplicaServers  # noqa: E402
from mibot_eval.types import Observation, PolicyRequest  # noqa: E402

SERVICE_ENV = "MIBOT_BENCH_SERVICE_MS"  # read in the replica processes


class SlowPolicy:
    """Batch-1 stand-in: the service time per request (one forward each), a zero (10, 32) chunk."""

    robot_types = {"libero_all"}
    supports_prefix = False

    def __init__(self) -> None:
        self.service_s = float(os.environ.get(SERVICE_ENV, "80")) / 1000

    def infer(self, requests):
        out = []
        for _ in requests:
            time.sleep(self.service_s)
            out.append(np.zeros((10, 32), dtype=np.float32))
        return out

    def describe(self):
        return {"kind": "benchmark", "service_s": self.service_s}


def _request() -> PolicyRequest:
    """A LIBERO-shaped request: two 256x256 views, an 8-d state, a seed."""
    view = np.zeros((256, 256, 3), np.uint8)
    images = {"Base View": view, "Left-Wrist View": view}
    return PolicyRequest(Observation(images, np.zeros(8), "pick it up."), "libero_all", seed=1)


def measure(replicas: int, seconds: float, checkpoint: str = "bench", factory: str | None = None,
            device: str | None = None) -> dict[str, float]:
    """chunks/s with `replicas` replica processes (a checkpoint, or a policy factory "module:attr")
    and as many clients sending back to back; also the replicas' start time."""
    start = time.perf_counter()
    with ReplicaServers(replicas, checkpoint=checkpoint, factory=factory, device=device) as servers:
        started = time.perf_counter() - start
        clients = [RemotePolicy(servers.urls[i % replicas], token_file=servers.token_file)
                   for i in range(replicas)]
        for client in clients:
            client.infer([_request()])  # connected and warm
        counts = [0] * replicas
        stop = time.monotonic() + seconds

        def loop(i: int) -> None:
            while time.monotonic() < stop:
                clients[i].infer([_request()])
                counts[i] += 1

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(replicas)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        for client in clients:
            client.close()
    return {"replicas": replicas, "chunks_per_s": round(sum(counts) / elapsed, 2),
            "start_s": round(started, 1), "seconds": round(elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--service-ms", type=float, default=80.0)
    parser.add_argument("--replicas", default="1,2,4,8")
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    os.environ[SERVICE_ENV] = str(args.service_ms)
    print(f"batch-1 service time {args.service_ms:g} ms; one client per replica; {args.seconds:g} s each\n")
    print("| replicas | chunks/s | speed-up vs 1 |")
    print("|---|---|---|")
    base = None
    for r in (int(x) for x in args.replicas.split(",")):
        rate = measure(r, args.seconds, factory=f"{Path(__file__).stem}:SlowPolicy")["chunks_per_s"]
        base = base or rate
        print(f"| {r} | {rate:.1f} | {rate / base:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
