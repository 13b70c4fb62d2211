"""The run's throughput options, checked once with one clear line per bad input.

Defaults keep records independent of timing: one observation per policy call (`batch_size` 1).
Batching several simulators' observations into one forward is asked for with a batch size above 1;
it changes nothing for checkpoints that take one seed per forward (the released ones: the policy
runs each request alone), but for checkpoints that seed per sample a batched forward differs from a
batch-1 forward in the last bits (about 5e-7 on CPU), the next request's seed hashes the
observation, and which observations share a batch depends on timing: the episodes diverge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.serving.client import parse_policy_urls

BACKENDS = ("local", "ray")
DEFAULT_EPISODE_TIMEOUT_S = 1800.0
MAX_ATTEMPTS = 2  # a crashed or hung episode is retried once, then recorded as an error
DEFAULT_BATCH_SIZE = 1  # records must not depend on timing unless the user asks (module docstring)


@dataclass(frozen=True)
class ParallelOptions:
    parallel: bool  # episodes run in simulator processes/actors (False: in this process, as before)
    backend: str
    workers: int
    batch_size: int
    batch_wait_s: float
    policy_urls: tuple[str, ...]
    episode_timeout_s: float | None
    ray_address: str
    ray_policy_replicas: int | None
    replicas: int = 0  # policy replica processes per device (0: none, the policy lives here)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "workers": self.workers, "batch_size": self.batch_size,
            "batch_wait_ms": round(self.batch_wait_s * 1000, 3), "policy": list(self.policy_urls),
            "episode_timeout_s": self.episode_timeout_s, "replicas": self.replicas,
        }


def validate(request: Any) -> ParallelOptions:
    backend = request.backend or "local"
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    workers = request.workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise UserError(f"--workers must be an integer >= 0 (0: in this process), got {workers!r}")
    workers = workers or None  # 0: no simulator process, the episodes run in this process
    batch = DEFAULT_BATCH_SIZE if request.batch_size is None else request.batch_size
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise UserError(f"--batch-size must be an integer >= 1, got {batch!r}")
    wait = request.batch_wait_ms
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 10_000:
        raise UserError(f"--batch-wait-ms must be a number of milliseconds in 0..10000, got {wait!r}")
    timeout = request.episode_timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout < 0):
        raise UserError(f"--episode-timeout must be >= 0 seconds (0: no limit), got {timeout!r}")
    parallel = workers is not None or backend == "ray"
    if timeout is not None and not parallel:
        raise UserError("--episode-timeout needs --workers N (or --backend ray): the watchdog "
                        "restarts simulator processes, which the in-process run does not have")
    if timeout is None:
        timeout = DEFAULT_EPISODE_TIMEOUT_S
    shard = request.shard
    if shard is not None:
        index, count = shard
        if count < 1 or not 0 <= index < count:
            raise UserError(f"--shard I/N needs 0 <= I < N, got {index}/{count}")
    replicas = request.ray_policy_replicas
    if replicas is not None and (backend != "ray" or replicas < 1):
        raise UserError("--ray-policy-replicas needs --backend ray and a value >= 1")
    local_replicas = getattr(request, "replicas", None) or 0
    if local_replicas:
        if isinstance(local_replicas, bool) or not isinstance(local_replicas, int) or local_replicas < 1:
            raise UserError(f"--replicas must be an integer >= 1, got {local_replicas!r}")
        if request.policy_url:
            raise UserError("--replicas starts its own policy processes; it excludes --policy ws://...")
        if backend == "ray":
            raise UserError("with --backend ray use --ray-policy-replicas (replicas are Ray actors)")
        if workers is None:
            workers = local_replicas  # as many simulators as forwards can run at once
        parallel = True
    urls = parse_policy_urls(request.policy_url)
    if len(urls) > 1 and backend != "ray" and not parallel:
        raise UserError("several --policy servers need --workers N (each worker uses one server)")
    if replicas is not None and urls:
        raise UserError("--ray-policy-replicas starts policy servers; it excludes --policy ws://...")
    return ParallelOptions(
        parallel=parallel, backend=backend, workers=workers or 1, batch_size=batch,
        batch_wait_s=float(wait) / 1000.0, policy_urls=urls,
        episode_timeout_s=float(timeout) if timeout else None,
        ray_address=request.ray_address or "auto", ray_policy_replicas=replicas,
        replicas=local_replicas,
    )
