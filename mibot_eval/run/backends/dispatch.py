"""Bookkeeping shared by the local and Ray backends: who runs what, retries, videos, recording.

A worker that crashes, hangs past the episode time limit, or is lost with its node costs only its
episode in flight: that episode is retried once on a fresh worker, then recorded as an error with
the reason (status "error", never a failure). Exceptions inside an episode are not retried: they
become error records exactly as in the single-process run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mibot_eval.results.store import write_atomic
from mibot_eval.run.backends.options import MAX_ATTEMPTS
from mibot_eval.run.backends.work_queue import WorkQueue
from mibot_eval.serving import codec
from mibot_eval.types import EpisodeResult, EpisodeSpec


class _ShippedVideo:
    """A finished episode video that arrived as bytes; `VideoPolicy.finish` keeps or drops it."""

    def __init__(self, folder: Path, stem: str, data: bytes | None) -> None:
        self.folder, self.stem, self.data = folder, stem, data

    def close(self, keep: bool, outcome: str = "") -> Path | None:
        if not keep or not self.data:
            return None
        final = self.folder / f"{self.stem}_{outcome}.mp4"
        write_atomic(final, self.data)
        return final


class Dispatch:
    """Hands episodes to workers and turns what comes back into records (via the Ledger)."""

    def __init__(self, todo: list[EpisodeSpec], ledger: Any, videos: Any) -> None:
        self.queue = WorkQueue(todo)
        self.ledger, self.videos = ledger, videos
        self.remaining = {spec.key for spec in todo}
        self.attempts: dict[str, list[str]] = {}  # key -> reasons of failed attempts

    @property
    def done(self) -> bool:
        return not self.remaining

    def next_for(self, worker: Any) -> tuple[EpisodeSpec, str] | None:
        """The next episode for this worker and its video mode (none | failures | all)."""
        spec = self.queue.next(worker)
        if spec is None:
            return None
        mode = self.videos.mode if self.videos.wants(spec.suite, spec.task_id) else "none"
        return spec, mode

    def finished(self, result_wire: dict[str, Any], video: bytes | None) -> EpisodeResult:
        result = codec.result_from_wire(result_wire)
        spec = result.spec
        failed = self.attempts.get(spec.key)
        if failed:
            result.metrics["attempts"] = len(failed) + 1
            result.metrics["retried_after"] = failed
        if video:  # the worker recorded it and it may be kept (VideoPolicy applies the cap)
            shipped = _ShippedVideo(self.videos.run_dir / "videos" / spec.suite,
                                    f"task{spec.task_id}_trial{spec.trial}", video)
            path = self.videos.finish(shipped, spec.suite, spec.task_id, result.success)
            if path is not None:
                result.metrics["video"] = str(path.relative_to(self.videos.run_dir))
        self._record(result)
        return result

    def lost(self, worker: Any, spec: EpisodeSpec | None, reason: str) -> None:
        """The worker is gone (crash, hang, lost node); `spec` was in flight on it, if any."""
        retry = None
        if spec is not None:
            failed = self.attempts.setdefault(spec.key, [])
            failed.append(reason)
            if len(failed) < MAX_ATTEMPTS:
                retry = spec
            else:
                detail = reason if len(set(failed)) == 1 else "; then ".join(failed)
                self._record(EpisodeResult(
                    spec=spec, success=False, steps=0, status="error",
                    error=f"{detail} (attempt {len(failed)} of {MAX_ATTEMPTS}; gave up)",
                    metrics={"attempts": len(failed), "retried_after": failed[:-1]},
                ))
        self.queue.give_back(worker, retry)

    def _record(self, result: EpisodeResult) -> None:
        self.ledger.record(result)  # durable first: an episode not on disk is never counted done
        self.remaining.discard(result.spec.key)
