"""`run --gate-against BASELINE`: run in an order that covers every task early and stop as soon as
the sequential paired gate (results/sequential.py) has decided the candidate against a baseline run.

Only episodes matched to the baseline count (same suite, key and protocol hash; a WidowX repeat
counts once). The order is round-robin over the plan's tasks (trial 0 of every task, then trial 1,
...), fixed and recorded in the manifest; a resumed run replays its recorded episodes first (in file
order) and a stopped run can be continued to the full protocol by rerunning without the option.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mibot_eval.errors import UserError
from mibot_eval.results.paired import unit_outcomes
from mibot_eval.results.sequential import SequentialGate
from mibot_eval.results.store import RunStore
from mibot_eval.types import EpisodeSpec

ORDER = "round_robin"


class GateDecided(BaseException):
    """The sequential gate decided: the backend stops (what is recorded stays recorded)."""


def round_robin(specs: Sequence[EpisodeSpec]) -> list[EpisodeSpec]:
    """Trial j of every (suite, task) before trial j + 1 of any, tasks in plan order."""
    groups: dict[tuple[str, int], list[EpisodeSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.suite, spec.task_id), []).append(spec)
    order = list(groups)
    depth = max((len(g) for g in groups.values()), default=0)
    return [groups[key][j] for j in range(depth) for key in order if j < len(groups[key])]


class GateSession:
    """The baseline's outcomes and the gate's state during one run."""

    def __init__(self, baseline: str | Path, protocol_hashes: dict[str, str], alpha: float,
                 max_drop_pp: float) -> None:
        if not 0 < alpha < 1:
            raise UserError(f"--alpha must be between 0 and 1, got {alpha}")
        if not 0 <= max_drop_pp < 100:
            raise UserError(f"--max-drop must be in [0, 100) percentage points, got {max_drop_pp}")
        path = Path(baseline)
        store = RunStore(path)
        if not path.is_dir() or not store.episodes_path.is_file():
            raise UserError(f"--gate-against {baseline}: not a run folder with recorded episodes")
        manifest = store.read_manifest() or {}
        theirs = {name: entry.get("hash") for name, entry in (manifest.get("suites") or {}).items()}
        records = store.records()
        for record in records:
            theirs.setdefault(str(record.get("suite")), record.get("protocol_hash"))
        self.matched_suites = sorted(s for s, h in protocol_hashes.items() if theirs.get(s) == h)
        if not self.matched_suites:
            raise UserError(f"--gate-against {baseline}: no suite of this run has the baseline's protocol "
                            f"(this run: {protocol_hashes}; baseline: {theirs})")
        self.baseline = str(path)
        self.outcomes = unit_outcomes(r for r in records if r.get("suite") in self.matched_suites)
        self.gate = SequentialGate(alpha, max_drop_pp / 100)
        self.seen: set[str] = set()

    def observe(self, record: dict[str, Any]) -> str | None:
        """One recorded candidate episode; the decision once there is one."""
        if record.get("suite") not in self.matched_suites:
            return self.gate.decision
        if (record.get("metrics") or {}).get("repeat_of"):
            return self.gate.decision  # a deterministic copy adds nothing
        key = str(record.get("key"))
        if key in self.seen or key not in self.outcomes:
            return self.gate.decision
        self.seen.add(key)
        mine = float(record.get("status", "ok") == "ok" and record.get("success") is True)
        return self.gate.update(mine, self.outcomes[key])

    def on_record(self, record: dict[str, Any]) -> None:
        """The Ledger's hook: stop the run once decided."""
        if self.gate.decision is None and self.observe(record) is not None:
            raise GateDecided(self.gate.decision)

    def summary(self, planned: int, recorded: int) -> dict[str, Any]:
        return {**self.gate.as_dict(), "baseline": self.baseline, "order": ORDER,
                "matched_suites": self.matched_suites, "planned_episodes": planned,
                "recorded_episodes": recorded, "stopped_early": self.gate.decision is not None
                and recorded < planned, "episodes_saved": max(0, planned - recorded)
                if self.gate.decision is not None else 0,
                "reason": self._reason()}

    def _reason(self) -> str:
        g = self.gate
        if g.decision == "regressed":
            return (f"regressed: wealth {g.wealth_regressed:.1f} >= 1/alpha = {g.threshold:g} after "
                    f"{g.decided_at} matched episodes")
        if g.decision == "not_worse":
            return (f"not worse than the baseline by more than {100 * g.max_drop:g} pp: wealth "
                    f"{g.wealth_not_worse:.1f} >= 1/alpha = {g.threshold:g} after {g.decided_at} matched "
                    "episodes")
        return f"undecided after {g.n} matched episodes: the fixed-N paired tests of `check` decide"
