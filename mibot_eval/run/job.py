"""One episode job: adapter + policy + scheduler -> EpisodeResult, wherever it runs.

The in-process backend, the local worker processes and the Ray actors all run episodes through
`run_job` (the same run_episode, ChunkScheduler, release seed, retry rule and trace hash), so a record
does not depend on where its episode ran. Videos: `run_kept_video` writes into the run folder (this
process), `run_shipped_video` returns the MP4 bytes for the main process to keep or drop (workers).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mibot_eval.config import SuiteProtocol
from mibot_eval.errors import UserError
from mibot_eval.policy.base import Policy
from mibot_eval.run.episode import run_episode
from mibot_eval.run.scheduler import ChunkScheduler, ExecutionConfig
from mibot_eval.run.video import EpisodeVideo, VideoPolicy
from mibot_eval.suites.base import SuiteAdapter
from mibot_eval.types import EpisodeResult, EpisodeSpec, PolicyRequest

EPISODE_ATTEMPTS = 2  # an exception inside an episode: retried once on a rebuilt env, then an error


class TracePolicy:
    """Forwards to a policy and hashes what crosses it: every observation the policy reads (state,
    images, instruction, prefix, seed) and every chunk it returns. Equal `trace_sha` = equal episodes."""

    def __init__(self, inner: Policy) -> None:
        self.inner = inner
        self.supports_prefix = getattr(inner, "supports_prefix", False)
        self._digest = hashlib.sha256()

    def infer(self, requests: Sequence[PolicyRequest]) -> list[np.ndarray]:
        chunks = self.inner.infer(requests)
        for request, chunk in zip(requests, chunks, strict=True):
            obs, d = request.observation, self._digest
            d.update(np.ascontiguousarray(obs.state, dtype=np.float64).tobytes())
            d.update(str(request.seed).encode())
            for label, image in obs.images.items():
                d.update(label.encode())
                d.update(np.ascontiguousarray(image).tobytes())
            d.update(obs.instruction.encode())
            if request.prefix is not None:
                d.update(np.ascontiguousarray(request.prefix, dtype=np.float64).tobytes())
            d.update(np.ascontiguousarray(chunk, dtype=np.float32).tobytes())
        return chunks

    def hexdigest(self) -> str:
        return self._digest.hexdigest()[:32]


def run_job(
    adapter: SuiteAdapter, policy: Policy, spec: EpisodeSpec, execution: ExecutionConfig,
    protocol: SuiteProtocol, robot_type: str, on_frame: Callable[[np.ndarray], None] | None = None,
) -> EpisodeResult:
    """One episode. A UserError stops the run. Any other exception is taken for an infrastructure
    failure: the adapter is closed (its env is rebuilt) and the episode retried once; a second
    exception becomes an error record, which the statistics count as a failure, as the release does.
    """
    reasons: list[str] = []
    while True:
        scheduler = ChunkScheduler(execution, protocol.hold_action, protocol.hold_gripper)
        tracer = TracePolicy(policy)
        try:
            result = run_episode(adapter, tracer, spec, scheduler, robot_type, protocol.max_steps,
                                 on_frame=on_frame, seed_rule=protocol.request_seed)
        except UserError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried once, then an error record (a failure)
            reasons.append(traceback.format_exception_only(type(exc), exc)[-1].strip())
            with contextlib.suppress(Exception):
                adapter.close()
            if len(reasons) < EPISODE_ATTEMPTS:
                continue
            return EpisodeResult(spec=spec, success=False, steps=0, status="error", error=reasons[-1],
                                 metrics={"attempts": len(reasons), "retried_after": reasons[:-1]})
        result.metrics["trace_sha"] = tracer.hexdigest()
        if reasons:
            result.metrics.update(attempts=len(reasons) + 1, retried_after=reasons)
        return result


def run_kept_video(
    adapter: SuiteAdapter, policy: Policy, spec: EpisodeSpec, execution: ExecutionConfig,
    protocol: SuiteProtocol, robot_type: str, videos: VideoPolicy,
) -> EpisodeResult:
    """`run_job` with this process's VideoPolicy deciding whether the episode's MP4 is kept."""
    video = videos.recorder(spec.suite, spec.task_id, spec.trial) if videos.wants(spec.suite, spec.task_id) \
        else None
    adapter.record_video = video is not None
    result = run_job(adapter, policy, spec, execution, protocol, robot_type,
                     on_frame=video.add if video is not None else None)
    if video is not None:
        path = videos.finish(video, spec.suite, spec.task_id, result.success)
        if path is not None:
            result.metrics["video"] = str(path.relative_to(videos.run_dir))
    return result


def run_shipped_video(
    adapter: SuiteAdapter, policy: Policy, spec: EpisodeSpec, execution: ExecutionConfig,
    protocol: SuiteProtocol, robot_type: str, video: str = "none", fps: int = 20,
) -> tuple[EpisodeResult, bytes | None]:
    """`run_job` recording to a temporary MP4 when `video` (none | failures | all) may keep it;
    returns the result and the MP4 bytes (None when not kept)."""
    recorder: Any = None
    folder = None
    if video != "none":
        folder = tempfile.mkdtemp(prefix="mibot-video-")
        recorder = EpisodeVideo(Path(folder), f"task{spec.task_id}_trial{spec.trial}", fps)
    adapter.record_video = recorder is not None
    data = None
    try:
        result = run_job(adapter, policy, spec, execution, protocol, robot_type,
                         on_frame=recorder.add if recorder is not None else None)
        if recorder is not None:
            keep = video == "all" or (video == "failures" and not result.success)
            path = recorder.close(keep=keep, outcome="episode")
            if path is not None:
                data = path.read_bytes()
                path.unlink()
    finally:
        if folder is not None:
            for leftover in Path(folder).iterdir():
                leftover.unlink()
            os.rmdir(folder)
    return result, data
