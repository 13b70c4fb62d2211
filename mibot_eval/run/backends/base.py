"""The Backend protocol: how a run's episode jobs get executed.

Three backends implement it: `inprocess.InProcessBackend` (this process, one episode after another),
`local.LocalPoolBackend` (`--workers N` simulator processes, batched inference) and `ray.RayBackend`
(`--backend ray`). Each runs every job through run/job.py and hands each finished episode to the
Ledger, the run's single writer; none knows about the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from mibot_eval.run.ledger import Ledger
from mibot_eval.run.planning import SuitePlan
from mibot_eval.run.video import VideoPolicy
from mibot_eval.types import EpisodeSpec


class Backend(Protocol):
    """Runs episode jobs."""

    name: str

    def run(self, plans: Sequence[SuitePlan], todo: Sequence[EpisodeSpec], ledger: Ledger,
            videos: VideoPolicy) -> dict[str, Any]:
        """Run every episode of `todo` (each belongs to one of `plans`), recording each finished one
        with `ledger.record`; returns statistics for the manifest (empty when there are none)."""
        ...
