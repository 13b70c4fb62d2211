"""The in-process backend: episodes one after another in this process (no `--workers`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mibot_eval.policy.base import Policy
from mibot_eval.run import interrupts
from mibot_eval.run.job import run_kept_video
from mibot_eval.run.ledger import Ledger
from mibot_eval.run.planning import SuitePlan
from mibot_eval.run.video import VideoPolicy
from mibot_eval.suites.base import SuiteAdapter
from mibot_eval.types import EpisodeSpec


class InProcessBackend:
    """Episodes one after another in this process, each suite's adapter (planning's, by suite name)
    reused across them."""

    name = "in-process"

    def __init__(self, policy: Policy, adapters: Mapping[str, SuiteAdapter]) -> None:
        self.policy = policy
        self.adapters = adapters

    def run(self, plans: Sequence[SuitePlan], todo: Sequence[EpisodeSpec], ledger: Ledger,
            videos: VideoPolicy) -> dict[str, Any]:
        by_suite = {plan.protocol.name: plan for plan in plans}
        for spec in todo:
            interrupts.check()
            plan = by_suite[spec.suite]
            ledger.record(run_kept_video(self.adapters[spec.suite], self.policy, spec, plan.execution,
                                         plan.protocol, plan.robot_type, videos))
        return {}
