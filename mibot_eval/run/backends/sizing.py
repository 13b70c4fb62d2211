"""`--workers auto` (the command line's default): as many simulator processes as the machine holds,
and on a CUDA machine as many batch-1 policy replicas as its GPU holds (released checkpoints).

One core is left to the main process (the batcher and the single writer), every simulator needs
about `ENV_MEMORY_GB` of memory (a LIBERO env, protocols.md: about 1.5 GB RSS), and there is no point
in more workers than episodes. One worker means the in-process backend. The estimate of the wall
time printed at the start uses seconds per episode measured on this project's 2-core CPU machine
(README, lazy rendering, the tiny checkpoint) and is labelled as an estimate; the progress bar
refines it as episodes finish.
"""

from __future__ import annotations

import os

ENV_MEMORY_GB = 1.5  # protocols.md, LIBERO CPU facts: about 1.5 GB RSS per env
# GPU memory one policy replica of a released checkpoint needs: 9.43 GB of bf16 weights (the
# release-size stand-in, `tiny-checkpoint --size release`) plus activations and the KV cache of one
# batch-1 forward, about 2.5 GB (an estimate; benchmarks/gpu_check.sh measures it)
REPLICA_MEMORY_GB = 12.0
# at most this many auto replicas on one GPU: an assumption that more concurrent batch-1 forwards stop
# adding chunks/s (benchmarks/gpu_check.sh measures 1, 2, 4, 8); `--replicas R` chooses more
MAX_AUTO_REPLICAS_PER_GPU = 4
# seconds per episode, one simulator, CPU (measured here, see README); None: unknown
SECONDS_PER_EPISODE = {"libero": 7.1, "libero_pro": 7.1, "calvin": 60.0, "simpler": 15.0}


def available_memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def auto_workers(episodes: int) -> tuple[int, str]:
    """(workers, why) for this machine and this many planned episodes."""
    cores = os.cpu_count() or 1
    memory = available_memory_gb()
    by_memory = int(memory // ENV_MEMORY_GB) if memory is not None else cores
    workers = max(1, min(cores - 1, by_memory, episodes))
    why = (f"{cores} cores (one kept for the main process), "
           + (f"{memory:.0f} GiB free at {ENV_MEMORY_GB:g} GiB per simulator, " if memory is not None else "")
           + f"{episodes} episodes")
    return workers, why


def gpu_free_memory_gb() -> list[float]:
    """Free memory of each visible CUDA device (GiB); empty without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.mem_get_info(i)[0] / 2**30 for i in range(torch.cuda.device_count())]


def auto_replicas(gpu_free_gb: list[float], workers: int) -> tuple[int, str]:
    """(replicas, why): batch-1 policy processes for this machine's GPUs, at most one per worker.

    Only the first GPU is used (`--replicas` places every replica on the run's device); a replica
    needs `REPLICA_MEMORY_GB`, and at most `MAX_AUTO_REPLICAS_PER_GPU` share it."""
    if not gpu_free_gb:
        return 1, "no CUDA device"
    by_memory = int(gpu_free_gb[0] // REPLICA_MEMORY_GB)
    replicas = max(1, min(MAX_AUTO_REPLICAS_PER_GPU, by_memory, workers))
    return replicas, (f"{gpu_free_gb[0]:.0f} GiB free on the GPU at about {REPLICA_MEMORY_GB:g} GiB per "
                      f"replica, at most {MAX_AUTO_REPLICAS_PER_GPU} per GPU, {workers} simulators")


def eta_text(episodes: int, benchmarks: list[str], workers: int) -> str:
    per = [SECONDS_PER_EPISODE.get(b) for b in benchmarks]
    if not episodes or any(p is None for p in per):
        return "ETA: the progress bar estimates it after the first episodes"
    seconds = episodes * max(p for p in per if p is not None) / max(1, workers)
    span = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"
    return (f"ETA about {span} (estimate: CPU seconds per episode measured on a 2-core "
            "machine, software rendering; a GPU node is faster; the progress bar refines it)")
