"""Run one episode: adapter + policy + scheduler, with timings. No files, no processes.

The loop is generic: `ChunkScheduler` alone decides when a request fires, which action runs and
which observation must be rendered (see mibot_eval.run.scheduler for the sync/async semantics).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mibot_eval.config import SeedRule
from mibot_eval.policy.base import Policy
from mibot_eval.policy.seed import release_seed
from mibot_eval.run import interrupts
from mibot_eval.run.scheduler import ChunkScheduler
from mibot_eval.suites.base import SuiteAdapter
from mibot_eval.types import EpisodeResult, EpisodeSpec, PolicyRequest

FrameSink = Callable[[np.ndarray], None]
Clock = Callable[[], float]

# A blocking first request can be followed at once by a second one (when d_hat >= the window).
MAX_REQUESTS_PER_STEP = 2


def run_episode(
    adapter: SuiteAdapter,
    policy: Policy,
    spec: EpisodeSpec,
    scheduler: ChunkScheduler,
    robot_type: str,
    max_steps: int,
    on_frame: FrameSink | None = None,
    clock: Clock = time.perf_counter,
    seed_rule: SeedRule | None = None,
) -> EpisodeResult:
    """Reset, then act until success or `max_steps` env steps after the protocol's wait.

    seed_rule: the suite's `request_seed`; every request then carries the seed the release's client
    would send (recorded, in order, as metrics.request_seeds). The instruction of each request is
    recorded when it changes (metrics.instructions_sent: [[step, text], ...]).

    clock times each inference call; its readings are the latencies the scheduler converts into
    delay steps with `--delay measured` (tests inject a fake clock).
    When an adapter sets StepResult.reset_policy it must also return that step's observation: the
    scheduler re-queries at the next step.
    """
    timings = {"reset_s": 0.0, "infer_s": 0.0, "sim_s": 0.0}
    start = time.perf_counter()
    observation = adapter.reset(spec)
    interrupts.check()  # a signal during the reset (LIBERO's reset loop swallows KeyboardInterrupt)
    timings["reset_s"] = time.perf_counter() - start
    scheduler.reset()
    if on_frame is not None:
        frame = adapter.video_frame()
        if frame is not None:
            on_frame(frame)
    success, steps = False, 0
    seeds: list[int] = []
    instructions: list[list[object]] = []
    overlap = Overlap(policy, clock)
    with overlap:
        for step in range(1, max_steps + 1):
            interrupts.check()  # Ctrl-C / SIGTERM: stop here (the episode is not recorded)
            steps = step
            requests = 0
            while scheduler.query_due():
                if requests == MAX_REQUESTS_PER_STEP:
                    raise RuntimeError(f"scheduler asked for more than {requests} requests in one step")
                requests += 1
                seed = None if seed_rule is None else release_seed(observation, robot_type, seed_rule)
                request = PolicyRequest(observation, robot_type, prefix=scheduler.prefix(), seed=seed)
                if seed is not None:
                    seeds.append(seed)
                if not instructions or instructions[-1][1] != observation.instruction:
                    instructions.append([step - 1, observation.instruction])
                if scheduler.can_defer():  # async, fixed delay: infer while the simulator runs
                    scheduler.submit_deferred()
                    overlap.start(request)
                    continue
                t0 = clock()
                chunk = policy.infer([request])[0]
                latency = clock() - t0
                timings["infer_s"] += latency
                scheduler.submit(adapter.to_env_actions(chunk), latency)
            action, _idle = scheduler.next_action()
            if scheduler.awaiting_chunk():
                t0 = time.perf_counter()
                chunk, latency = overlap.result()
                timings["infer_s"] += latency
                timings["infer_wait_s"] = timings.get("infer_wait_s", 0.0) + time.perf_counter() - t0
                scheduler.complete(adapter.to_env_actions(chunk), latency)
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
    metrics = scheduler.stats.as_metrics()
    metrics["motion"] = scheduler.motion_metrics(steps if success else None)
    metrics["instructions_sent"] = instructions
    if seed_rule is not None:
        metrics["request_seeds"] = seeds
    episode_metrics = getattr(adapter, "episode_metrics", None)
    if episode_metrics is not None:
        metrics.update(episode_metrics() or {})
    return EpisodeResult(
        spec=spec,
        success=success,
        steps=steps,
        timings=timings,
        metrics=metrics,
    )


class Overlap:
    """At most one background inference (see scheduler.py, Overlap): its chunk and latency."""

    def __init__(self, policy: Policy, clock: Clock) -> None:
        self.policy, self.clock = policy, clock
        self._executor: Any = None
        self._future: Any = None

    def start(self, request: PolicyRequest) -> None:
        if self._executor is None:
            import concurrent.futures

            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="infer")
        self._future = self._executor.submit(self._infer, request)

    def _infer(self, request: PolicyRequest) -> tuple[np.ndarray, float]:
        t0 = self.clock()
        chunk = self.policy.infer([request])[0]
        return chunk, self.clock() - t0

    def result(self) -> tuple[np.ndarray, float]:
        future, self._future = self._future, None
        return future.result()

    def __enter__(self) -> Overlap:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
