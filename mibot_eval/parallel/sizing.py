"""`--workers auto` (the command line's default): as many simulator processes as the machine holds.

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


def eta_text(episodes: int, benchmarks: list[str], workers: int) -> str:
    per = [SECONDS_PER_EPISODE.get(b) for b in benchmarks]
    if not episodes or any(p is None for p in per):
        return "ETA: the progress bar estimates it after the first episodes"
    seconds = episodes * max(p for p in per if p is not None) / max(1, workers)
    return (f"ETA about {seconds / 3600:.1f} h (estimate: CPU seconds per episode measured on a 2-core "
            "machine, software rendering; a GPU node is faster; the progress bar refines it)")
