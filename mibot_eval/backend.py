"""The Backend protocol: how a run's episode jobs get executed, and the in-process implementation.

Three backends implement it: `InProcessBackend` (here: this process, one episode after another),
`parallel.local.LocalPoolBackend` (`--workers N` simulator processes, batched inference) and
`parallel.ray_backend.RayBackend` (`--backend ray`). Each runs every job through job.py and hands
each finished episode to the Ledger, the run's single writer; none knows about the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from mibot_eval import interrupts
from mibot_eval.job import run_kept_video
from mibot_eval.ledger import Ledger
from mibot_eval.planning import SuitePlan
from mibot_eval.policy.base import Policy
from mibot_eval.types import EpisodeSpec
from mibot_eval.video import VideoPolicy


class Backend(Protocol):
    """Runs episode jobs."""

    name: str

    def run(self, plans: Sequence[SuitePlan], todo: Sequence[EpisodeSpec], ledger: Ledger,
            videos: VideoPolicy) -> dict[str, Any]:
        """Run every episode of `todo` (each belongs to one of `plans`), recording each finished one
        with `ledger.record`; returns statistics for the manifest (empty when there are none)."""
        ...


class InProcessBackend:
    """Episodes one after another in this process, each suite's adapter reused across them."""

    name = "in-process"

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def run(self, plans: Sequence[SuitePlan], todo: Sequence[EpisodeSpec], ledger: Ledger,
            videos: VideoPolicy) -> dict[str, Any]:
        by_suite = {plan.protocol.name: plan for plan in plans}
        for spec in todo:
            interrupts.check()
            plan = by_suite[spec.suite]
            ledger.record(run_kept_video(plan.adapter, self.policy, spec, plan.execution, plan.protocol,
                                         plan.robot_type, videos))
        return {}
