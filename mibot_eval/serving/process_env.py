"""The environment every child process of the harness starts with (simulator workers, Ray actors,
policy replicas): headless EGL unless the user chose otherwise, one thread per numeric library."""

from __future__ import annotations

import os

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def prepare_process_env(render_threads: int = 1) -> None:
    """Set before anything imports MuJoCo or torch in a simulator process.

    render_threads: Mesa llvmpipe's rasterizer threads (software EGL; ignored by GPU drivers), this
    worker's share of the CPUs, so N workers do not each start one thread per core. An explicit
    LP_NUM_THREADS in the environment wins.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    for name in THREAD_ENV:
        os.environ[name] = "1"
    os.environ.setdefault("LP_NUM_THREADS", str(max(1, int(render_threads))))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
