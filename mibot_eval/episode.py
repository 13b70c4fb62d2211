"""Run one episode: adapter + policy + scheduler, with timings. No files, no processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from mibot_eval.execution import ChunkScheduler
from mibot_eval.policy.base import Policy
from mibot_eval.suites.base import SuiteAdapter
from mibot_eval.types import EpisodeResult, EpisodeSpec, PolicyRequest

FrameSink = Callable[[np.ndarray], None]


def run_episode(
    adapter: SuiteAdapter,
    policy: Policy,
    spec: EpisodeSpec,
    scheduler: ChunkScheduler,
    robot_type: str,
    max_steps: int,
    on_frame: FrameSink | None = None,
) -> EpisodeResult:
    """Reset, then act until success or `max_steps` env steps after the protocol's wait."""
    timings = {"reset_s": 0.0, "infer_s": 0.0, "sim_s": 0.0}
    start = time.perf_counter()
    observation = adapter.reset(spec)
    timings["reset_s"] = time.perf_counter() - start
    scheduler.reset()
    if on_frame is not None:
        frame = adapter.video_frame()
        if frame is not None:
            on_frame(frame)
    success, steps = False, 0
    for step in range(1, max_steps + 1):
        steps = step
        if scheduler.query_due():
            t0 = time.perf_counter()
            request = PolicyRequest(observation, robot_type, prefix=scheduler.prefix())
            chunk = policy.infer([request])[0]
            latency = time.perf_counter() - t0
            timings["infer_s"] += latency
            scheduler.submit(adapter.to_env_actions(chunk), latency)
        action, _idle = scheduler.next_action()
        t0 = time.perf_counter()
        result = adapter.step(action, observe=scheduler.observation_needed())
        timings["sim_s"] += time.perf_counter() - t0
        if on_frame is not None:
            frame = adapter.video_frame()
            if frame is not None:
                on_frame(frame)
        if result.observation is not None:
            observation = result.observation
        if result.reset_policy:
            scheduler.reset()
        if result.success or result.done:
            success = result.success
            break
    timings["total_s"] = time.perf_counter() - start
    return EpisodeResult(
        spec=spec,
        success=success,
        steps=steps,
        timings=timings,
        metrics=scheduler.stats.as_metrics(),
    )
