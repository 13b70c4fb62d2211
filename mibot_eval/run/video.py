"""Episode videos: stream agentview frames to an MP4 and keep it only if the policy says so."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from mibot_eval.errors import UserError

VIDEO_MODES = ("none", "failures", "all")


class VideoPolicy:
    """Which episodes keep a video: none, failures or all, at most `cap_per_task` per task."""

    def __init__(self, mode: str, run_dir: Path, cap_per_task: int = 3, fps: int = 20) -> None:
        if mode not in VIDEO_MODES:
            raise UserError(f"--video must be one of {', '.join(VIDEO_MODES)}, got {mode!r}")
        self.mode, self.run_dir, self.cap, self.fps = mode, Path(run_dir), cap_per_task, fps
        self.kept: Counter[tuple[str, int]] = Counter()
        for path in (self.run_dir / "videos").glob("*/task*_trial*.mp4"):
            self.kept[(path.parent.name, int(path.name.split("_")[0][4:]))] += 1

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def wants(self, suite: str, task_id: int) -> bool:
        return self.enabled and self.kept[(suite, task_id)] < self.cap

    def recorder(self, suite: str, task_id: int, trial: int) -> EpisodeVideo:
        folder = self.run_dir / "videos" / suite
        return EpisodeVideo(folder, f"task{task_id}_trial{trial}", self.fps)

    def finish(self, video: EpisodeVideo, suite: str, task_id: int, success: bool) -> Path | None:
        keep = self.mode == "all" or (self.mode == "failures" and not success)
        if keep and self.kept[(suite, task_id)] < self.cap:
            self.kept[(suite, task_id)] += 1
            return video.close(keep=True, outcome="success" if success else "failure")
        video.close(keep=False)
        return None


class EpisodeVideo:
    """Frames streamed to a temporary MP4 (libx264 via imageio-ffmpeg); renamed when kept."""

    def __init__(self, folder: Path, stem: str, fps: int) -> None:
        import imageio.v2 as imageio

        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.stem = folder, stem
        self.tmp = folder / f".{stem}.tmp.mp4"
        self._writer = imageio.get_writer(
            self.tmp, fps=fps, codec="libx264", quality=7, macro_block_size=1
        )
        self.frames = 0

    def add(self, frame: np.ndarray) -> None:
        self._writer.append_data(np.asarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self, keep: bool, outcome: str = "") -> Path | None:
        self._writer.close()
        if not keep or self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        final = self.folder / f"{self.stem}_{outcome}.mp4"
        self.tmp.replace(final)
        return final
